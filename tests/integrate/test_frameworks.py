"""Frameworks on the official client: LangChain (langchain-ollama) and LlamaIndex (llama-index-llms-ollama,
llama-index-embeddings-ollama) cached through ``CachedOllamaTransport`` with public arguments only, against
the project's Ollama API test server. A cached answer is exactly the first answer (metadata included); its
text, chunks, usage and vectors equal the plain framework's; a warm call asks the server nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.cache import Cache, CacheConfig
from infra.integrate import CachedOllamaTransport
from infra.testing.ollama_server import OllamaTestServer

pytest.importorskip("langchain_ollama")
pytest.importorskip("llama_index.llms.ollama")
pytest.importorskip("llama_index.embeddings.ollama")

PROMPTS = [f"reflection {i}: feeling {'calm' if i % 2 else 'stressed'}" for i in range(6)]


@pytest.fixture(scope="module")
def server() -> Iterator[OllamaTestServer]:
    with OllamaTestServer(token_latency=0.0) as srv:
        yield srv


@pytest.fixture
def transport(tmp_path: Path) -> Iterator[CachedOllamaTransport]:
    cache = Cache(CacheConfig(path=str(tmp_path / "c.db")))
    t = CachedOllamaTransport(cache=cache)
    yield t
    t.close()
    cache.close()


@pytest.fixture
def plain() -> Iterator[Any]:
    """The plain frameworks' connections, on a transport the test closes (they never close their own)."""
    import httpx

    t = httpx.HTTPTransport()
    yield t
    t.close()


def arun(transport: CachedOllamaTransport, coro: Any) -> Any:
    """``asyncio.run`` that closes the transport's async pool on the loop that opened it."""

    async def main() -> Any:
        try:
            return await coro
        finally:
            await transport.aclose()

    return asyncio.run(main())


def _work(server: OllamaTestServer) -> dict[str, int]:
    stats = server.stats()
    return {**stats["requests"], "embed_inputs": stats["embed_inputs"]}


def _inference(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    keys = ("chat", "generate", "embed", "embeddings", "embed_inputs")
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys}


def _message(m: Any) -> dict[str, Any]:
    """An AIMessage as data, less its per-run id (LangChain gives every run a fresh one, cached or not)."""
    return m.model_dump(exclude={"id"})


def _same_answer(m: Any) -> tuple[Any, ...]:
    """What a plain call and a cached one must agree on (a plain call's timings are its own)."""
    return (m.content, m.additional_kwargs, m.tool_calls, m.usage_metadata)


def test_langchain_chat_invoke_stream_ainvoke(server: OllamaTestServer, transport: Any, plain: Any) -> None:
    from langchain_ollama import ChatOllama

    plain = ChatOllama(
        model="llama3.2:3b", base_url=server.url, temperature=0, sync_client_kwargs={"transport": plain}
    )
    cached = ChatOllama(
        model="llama3.2:3b", base_url=server.url, temperature=0, client_kwargs={"transport": transport}
    )
    first = [cached.invoke(p) for p in PROMPTS]
    first_streams = [[c.model_dump(exclude={"id"}) for c in cached.stream(p + "!")] for p in PROMPTS]
    w0 = _work(server)
    again = [cached.invoke(p) for p in PROMPTS]
    streams = [[c.model_dump(exclude={"id"}) for c in cached.stream(p + "!")] for p in PROMPTS]

    async def ainvoke_all() -> list[Any]:
        return [await cached.ainvoke(p) for p in PROMPTS]

    async_again = arun(transport, ainvoke_all())
    assert _inference(w0, _work(server)) == dict.fromkeys(
        ("chat", "generate", "embed", "embeddings", "embed_inputs"), 0
    )
    assert [_message(m) for m in again] == [_message(m) for m in first]
    assert [_message(m) for m in async_again] == [_message(m) for m in first]
    assert streams == first_streams and all(len(s) > 2 for s in streams)
    assert [_same_answer(plain.invoke(p)) for p in PROMPTS] == [_same_answer(m) for m in first]
    plain_streams = [[c.content for c in plain.stream(p + "!")] for p in PROMPTS]
    assert plain_streams == [[c["content"] for c in s] for s in streams]


def test_langchain_embeddings(server: OllamaTestServer, transport: Any, plain: Any) -> None:
    from langchain_ollama import OllamaEmbeddings

    plain = OllamaEmbeddings(
        model="nomic-embed-text", base_url=server.url, sync_client_kwargs={"transport": plain}
    )
    cached = OllamaEmbeddings(
        model="nomic-embed-text", base_url=server.url, client_kwargs={"transport": transport}
    )
    first = cached.embed_documents(PROMPTS)
    q = cached.embed_query(PROMPTS[0])
    w0 = _work(server)
    assert cached.embed_documents(PROMPTS) == first
    assert arun(transport, cached.aembed_documents(PROMPTS)) == first
    assert cached.embed_query(PROMPTS[0]) == q
    assert _inference(w0, _work(server))["embed_inputs"] == 0
    assert plain.embed_documents(PROMPTS) == first and plain.embed_query(PROMPTS[0]) == q


def test_llamaindex_llm_complete_chat_stream(server: OllamaTestServer, transport: Any, plain: Any) -> None:
    import ollama
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.ollama import Ollama

    def make(**kw: Any) -> Any:
        return Ollama(model="llama3.2:3b", base_url=server.url, request_timeout=30, temperature=0, **kw)

    plain = make(client=ollama.Client(host=server.url, transport=plain))
    cached = make(
        client=ollama.Client(host=server.url, transport=transport),
        async_client=ollama.AsyncClient(host=server.url, transport=transport),
    )
    first = [cached.complete(p) for p in PROMPTS]
    chats = [cached.chat([ChatMessage(role="user", content=p)]) for p in PROMPTS]
    streams = [[r.delta for r in cached.stream_complete(p + "?")] for p in PROMPTS]
    w0 = _work(server)
    assert [(r.text, r.raw) for r in (cached.complete(p) for p in PROMPTS)] == [
        (r.text, r.raw) for r in first
    ]
    assert [cached.chat([ChatMessage(role="user", content=p)]).message for p in PROMPTS] == [
        c.message for c in chats
    ]
    assert [[r.delta for r in cached.stream_complete(p + "?")] for p in PROMPTS] == streams
    assert [arun(transport, cached.acomplete(p)).text for p in PROMPTS] == [r.text for r in first]
    assert _inference(w0, _work(server))["chat"] == 0
    assert [plain.complete(p).text for p in PROMPTS] == [r.text for r in first]
    assert [[r.delta for r in plain.stream_complete(p + "?")] for p in PROMPTS] == streams


def test_llamaindex_embeddings(server: OllamaTestServer, transport: Any, plain: Any) -> None:
    from llama_index.embeddings.ollama import OllamaEmbedding

    # OllamaEmbedding hands client_kwargs to its sync and async client alike: a CachedOllamaTransport
    # serves both; the plain one only ever makes sync calls here
    plain = OllamaEmbedding(
        model_name="nomic-embed-text", base_url=server.url, client_kwargs={"transport": plain}
    )
    cached = OllamaEmbedding(
        model_name="nomic-embed-text", base_url=server.url, client_kwargs={"transport": transport}
    )
    first = cached.get_text_embedding_batch(PROMPTS)
    w0 = _work(server)
    assert cached.get_text_embedding_batch(PROMPTS) == first
    assert arun(transport, cached.aget_text_embedding(PROMPTS[0])) == first[0]  # /api/embed, one input
    w1 = _work(server)
    assert cached.get_text_embedding_batch(PROMPTS) == first
    assert _inference(w1, _work(server))["embed_inputs"] == 0
    assert _inference(w0, w1)["embed_inputs"] <= 1
    assert plain.get_text_embedding_batch(PROMPTS) == first


def test_an_abandoned_stream_is_never_stored(server: OllamaTestServer, transport: Any) -> None:
    from langchain_ollama import ChatOllama

    cached = ChatOllama(model="llama3.2:3b", base_url=server.url, client_kwargs={"transport": transport})
    stream = cached.stream("a long answer please")
    next(stream)
    stream.close()
    w0 = _work(server)
    full = [c.content for c in cached.stream("a long answer please")]
    assert _inference(w0, _work(server))["chat"] == 1  # computed again: the first was never stored
    w1 = _work(server)
    assert [c.content for c in cached.stream("a long answer please")] == full
    assert _inference(w1, _work(server))["chat"] == 0


RESTARTED = """
import json, sys
from infra.cache import Cache, CacheConfig
from infra.integrate import CachedOllamaTransport
from langchain_ollama import ChatOllama, OllamaEmbeddings

url, path, prompts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
cache = Cache(CacheConfig(path=path))
t = CachedOllamaTransport(cache=cache)
chat = ChatOllama(model="llama3.2:3b", base_url=url, temperature=0, client_kwargs={"transport": t})
emb = OllamaEmbeddings(model="nomic-embed-text", base_url=url, client_kwargs={"transport": t})
out = {
    "messages": [chat.invoke(p).model_dump(exclude={"id"}) for p in prompts],
    "vectors": emb.embed_documents(prompts),
}
t.close()
cache.close()
print(json.dumps(out))
"""


def test_a_restarted_process_reads_the_answers_back(server: OllamaTestServer, tmp_path: Path) -> None:
    """The stored bytes are plain data: a new process gets the same messages and vectors, asking nothing."""
    import json
    import os
    import subprocess
    import sys

    from langchain_ollama import ChatOllama, OllamaEmbeddings

    path = str(tmp_path / "shared.db")
    cache = Cache(CacheConfig(path=path))
    t = CachedOllamaTransport(cache=cache)
    chat = ChatOllama(model="llama3.2:3b", base_url=server.url, temperature=0, client_kwargs={"transport": t})
    emb = OllamaEmbeddings(model="nomic-embed-text", base_url=server.url, client_kwargs={"transport": t})
    first = {
        "messages": [chat.invoke(p).model_dump(exclude={"id"}) for p in PROMPTS],
        "vectors": emb.embed_documents(PROMPTS),
    }
    t.close()
    cache.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERF_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    w0 = _work(server)
    run = subprocess.run(
        [sys.executable, "-c", RESTARTED, server.url, path, json.dumps(PROMPTS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout) == json.loads(json.dumps(first))
    assert set(_inference(w0, _work(server)).values()) == {0}
