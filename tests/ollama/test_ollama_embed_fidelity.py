"""Embedding calls through OptimizedOllama: what is sent, and what a cached hit hands back.

On main, every ``/api/embed`` body gained ``options: {num_thread, num_ctx: 4096}`` (the runner options
pinned for chat/generate models: sent to an embedding model that plain clients load with its own
defaults, that reloads it on every switch), and a cached ``embed()`` hit came back with
``prompt_eval_count=None`` where the plain client got a number.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest
from ollama_testutil import EMBED, LLM, settings

from infra.ollama import OptimizedOllama
from infra.testing.ollama_server import OllamaTestServer


class RecordingTransport(httpx.HTTPTransport):
    """The real transport to the test server, keeping each request's path and JSON body."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        self.sent.append((request.url.path, json.loads(body) if body else {}))
        return super().handle_request(request)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [b for p, b in self.sent if p == path]


@pytest.fixture
def recorded(server: OllamaTestServer, cache: Any) -> Iterator[tuple[Any, RecordingTransport]]:
    transport = RecordingTransport()
    s = settings(runner={"num_thread": 2, "num_ctx": 4096}, keep_alive=1800.0)
    c = OptimizedOllama(server.url, settings=s, cache=cache, transport=transport)
    yield c, transport
    c.close()


def test_embed_bodies_carry_no_chat_runner_options(recorded: tuple[Any, RecordingTransport]) -> None:
    llm, transport = recorded
    llm.embed(EMBED, "a sentence to embed")
    llm.chat(LLM, messages=[{"role": "user", "content": "hi"}])
    (embed_body,) = transport.bodies("/api/embed")
    assert "options" not in embed_body, embed_body
    assert embed_body["keep_alive"] == 1800.0  # keeps the model loaded; never a reload
    (chat_body,) = transport.bodies("/api/chat")
    assert chat_body["options"] == {"num_thread": 2, "num_ctx": 4096}


def test_a_per_model_runner_entry_still_reaches_the_embedding_model(
    server: OllamaTestServer, cache: Any
) -> None:
    transport = RecordingTransport()
    s = settings(runner={"num_ctx": 4096, EMBED.split(":")[0]: {"num_ctx": 8192}})
    with OptimizedOllama(server.url, settings=s, cache=cache, transport=transport) as llm:
        llm.embed(EMBED, "configured for this model")
    (body,) = transport.bodies("/api/embed")
    assert body["options"] == {"num_ctx": 8192}


def test_a_cached_embed_hit_has_the_fields_the_plain_client_got(
    recorded: tuple[Any, RecordingTransport], server: OllamaTestServer
) -> None:
    llm, transport = recorded
    plain = ollama.Client(host=server.url)
    try:
        direct = plain.embed(EMBED, "twelve chars")
    finally:
        plain.close()
    first = llm.embed(EMBED, "twelve chars")
    hit = llm.embed(EMBED, "twelve chars")
    assert len(transport.bodies("/api/embed")) == 1
    assert direct.prompt_eval_count is not None
    assert hit.prompt_eval_count == first.prompt_eval_count == direct.prompt_eval_count
    for name in ("model", "total_duration", "load_duration"):
        assert getattr(hit, name) == getattr(first, name), name
        assert (getattr(hit, name) is None) == (getattr(direct, name) is None), name
    assert [list(v) for v in hit.embeddings] == [list(v) for v in direct.embeddings]


def test_a_reassembled_batch_sums_the_counts_it_knows_and_leaves_out_what_it_cannot(
    recorded: tuple[Any, RecordingTransport],
) -> None:
    llm, _ = recorded
    a = llm.embed(EMBED, "aaaa")  # 4 characters: 1 token on the test server
    b = llm.embed(EMBED, "bbbbbbbb")  # 2 tokens
    both = llm.embed(EMBED, ["aaaa", "bbbbbbbb", "aaaa"])  # every item cached, each count known
    assert both.prompt_eval_count == 2 * a.prompt_eval_count + b.prompt_eval_count
    assert both.total_duration is None  # no timing belongs to a reply served from several entries

    mixed = llm.embed(EMBED, ["aaaa", "cccccccccccc"])  # one cached, one fetched now: 1 + 3 tokens
    assert mixed.prompt_eval_count == a.prompt_eval_count + 3

    llm.embed(EMBED, ["dddd", "eeee"])  # fetched together: neither text knows its own share
    unknown = llm.embed(EMBED, ["dddd"])
    assert unknown.prompt_eval_count is None


async def test_the_async_client_replays_the_same_fields(server: OllamaTestServer, cache: Any) -> None:
    from infra.ollama import AsyncOptimizedOllama

    llm = AsyncOptimizedOllama(server.url, settings=settings(), cache=cache)
    try:
        first = await llm.embed(EMBED, "sixteen chars!!!")
        hit = await llm.embed(EMBED, "sixteen chars!!!")
    finally:
        await llm.close()
    assert first.prompt_eval_count is not None
    assert hit.prompt_eval_count == first.prompt_eval_count
    assert hit.total_duration == first.total_duration
