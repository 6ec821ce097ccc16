"""OptimizedOllama / AsyncOptimizedOllama are the official clients (issue 15): is-a, constructor, private
surface, config by default, caller's options untouched, digests once, one error report, routing."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import ollama
import pytest
from ollama_testutil import EMBED, LLM, settings
from pydantic import BaseModel
from pytest_httpserver import HTTPServer

from infra.ollama import AsyncOptimizedOllama, OllamaConfig, OptimizedOllama, route_official
from infra.ollama.digests import BOOK
from infra.ollama.runner import physical_cores, resolve_runner
from infra.testing.ollama_server import OllamaTestServer

MSGS = [{"role": "user", "content": "Why is the sky blue?"}]
REPLY = {"model": "dummy", "message": {"role": "assistant", "content": "I don't know."}, "done": True}


def requests(srv: OllamaTestServer, endpoint: str) -> int:
    return int(srv.stats()["requests"].get(endpoint, 0))


def test_the_layers_clients_are_the_official_clients(httpserver: HTTPServer) -> None:
    """Is-a, and the official constructor's keywords reach the wire: headers (plus the official
    user-agent) are sent, ``follow_redirects`` is honoured (the official default follows)."""
    sync, aio = OptimizedOllama("http://127.0.0.1:9"), AsyncOptimizedOllama("http://127.0.0.1:9")
    assert isinstance(sync, ollama.Client) and isinstance(aio, ollama.AsyncClient)
    httpserver.expect_request("/api/tags").respond_with_data("", status=307, headers={"Location": "/moved"})
    httpserver.expect_request("/moved").respond_with_json({"models": []})
    url = httpserver.url_for("/")
    follows = OptimizedOllama(url)
    assert follows.list().models == []
    c = OptimizedOllama(url, headers={"X-Custom": "v"}, follow_redirects=False)
    with pytest.raises(ollama.ResponseError) as ei:
        c.list()
    assert ei.value.status_code == 307
    sent = httpserver.log[-1][0].headers
    assert sent["X-Custom"] == "v" and sent["User-Agent"].startswith("ollama-python/")
    for x in (sync, follows, c):
        x.close()


def test_assigning_ollama_client_does_not_recurse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15: ``ollama.Client = infra.OptimizedOllama`` gave RecursionError."""
    monkeypatch.setattr(ollama, "Client", OptimizedOllama)
    c = ollama.Client("http://127.0.0.1:9")
    assert type(c) is OptimizedOllama
    c.close()


def _official_and_layer_bodies(httpserver: HTTPServer, layer: Any) -> tuple[list[bytes], list[bytes]]:
    httpserver.expect_request("/api/chat").respond_with_json(REPLY)
    httpserver.expect_request("/api/generate").respond_with_json(
        {"model": "dummy", "response": "x", "done": True}
    )
    bodies: list[list[bytes]] = []
    for client in (ollama.Client(httpserver.url_for("/")), layer):
        start = len(httpserver.log)
        client.chat("dummy", MSGS, options={"temperature": 0})
        client.generate("dummy", "hi", keep_alive="1m")
        bodies.append([req.get_data() for req, _ in httpserver.log[start:]])
        client.close()
    return bodies[0], bodies[1]


@pytest.mark.parametrize("env", [{"PERF_ENABLED": "0"}, {"PERF_OLLAMA_ENABLED": "false"}])
def test_a_plain_client_reads_the_config_and_off_sends_byte_identical_requests(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    from infra.config import reset_config

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    reset_config()
    try:
        layer = OptimizedOllama(httpserver.url_for("/"))
        assert layer.settings.enabled is False
        official, ours = _official_and_layer_bodies(httpserver, layer)
    finally:
        monkeypatch.undo()
        reset_config()
    assert ours == official and len(ours) == 2, "no extra request (no /api/tags), same bytes"


def test_tuning_off_caching_on_sends_the_official_bytes(httpserver: HTTPServer, cache: Any) -> None:
    layer = OptimizedOllama(
        httpserver.url_for("/"), settings=settings(runner={}, keep_alive=None), cache=cache
    )
    official, ours = _official_and_layer_bodies(httpserver, layer)
    assert ours[:1] == official[:1] and ours[-1] == official[-1]


def test_runner_options_and_keep_alive_fill_only_what_the_call_left_out(
    httpserver: HTTPServer, cache: Any
) -> None:
    httpserver.expect_request("/api/chat").respond_with_json(REPLY)
    llm = OptimizedOllama(httpserver.url_for("/"), settings=settings(resolve_digests=False), cache=cache)
    llm.chat("dummy", MSGS, options={"num_ctx": 2048}, keep_alive="2m", cache=False)
    llm.chat("dummy", MSGS, cache=False)
    llm.close()
    given, left_out = (json.loads(req.get_data()) for req, _ in httpserver.log)
    assert (
        given["options"] == {"num_ctx": 2048, "num_thread": physical_cores()} and given["keep_alive"] == "2m"
    )
    assert left_out["options"] == {"num_ctx": 4096, "num_thread": physical_cores()}
    assert left_out["keep_alive"] == 1800.0


def test_num_thread_defaults_to_the_machines_physical_cores() -> None:
    auto = OllamaConfig(runner={"num_thread": "auto"}).runner
    assert resolve_runner(auto)["num_thread"] == physical_cores()
    assert 1 <= physical_cores() <= (__import__("os").cpu_count() or 1)
    assert resolve_runner(OllamaConfig(runner={"num_thread": 3}).runner)["num_thread"] == 3


def test_digests_are_read_once_per_host_and_after_the_first_reply(
    server: OllamaTestServer, cache: Any
) -> None:
    BOOK.forget()
    seen: list[str] = []
    a = OptimizedOllama(
        server.url,
        settings=settings(),
        cache=cache,
        event_hooks={"request": [lambda r: seen.append(r.url.path)]},
    )
    b = AsyncOptimizedOllama(server.url, settings=settings(), cache=cache)
    a.generate(LLM, "one")
    a.generate(LLM, "two")
    a.embed(EMBED, ["x"])
    a.close()
    assert seen[:2] == ["/api/generate", "/api/tags"], "the request goes first; the listing after its reply"
    assert requests(server, "tags") == 1

    async def more() -> None:
        await b.generate(LLM, "one")  # a hit: validated against the process-wide listing, no new read
        await b.close()

    import asyncio

    asyncio.run(more())
    assert requests(server, "tags") == 1 and requests(server, "generate") == 2


def test_a_refused_connection_is_reported_once_as_the_official_client_does(caplog: Any, cache: Any) -> None:
    from ollama._client import CONNECTION_ERROR_MESSAGE

    BOOK.forget()
    llm = OptimizedOllama("http://127.0.0.1:9", settings=settings(retries=0), cache=cache)
    with caplog.at_level(logging.DEBUG, logger="infra.ollama"):
        with pytest.raises(ConnectionError, match=CONNECTION_ERROR_MESSAGE):
            llm.generate(LLM, "nobody home")
        with pytest.raises(ConnectionError, match=CONNECTION_ERROR_MESSAGE):
            llm.chat(LLM, MSGS)
    llm.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "nothing logged before the error"


def test_the_official_private_surface_behaves_as_upstream(monkeypatch: pytest.MonkeyPatch) -> None:
    """ollama-python's own tests patch ``Client._request``; the public methods must call it."""
    calls: list[tuple[Any, ...]] = []

    def fake(self: Any, cls: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append((cls, *args))
        return cls(**REPLY)

    monkeypatch.setattr(OptimizedOllama, "_request", fake)
    c = OptimizedOllama("http://127.0.0.1:9")
    assert c.chat("dummy", MSGS).message.content == "I don't know."
    assert calls == [(ollama.ChatResponse, "POST", "/api/chat")]
    c.close()


def test_route_official_reaches_classes_and_module_functions_and_undoes(
    server: OllamaTestServer, cache: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    before = {n: getattr(ollama, n) for n in ("Client", "AsyncClient", "chat", "generate", "embed", "list")}
    routing = route_official(settings=settings(), cache=cache)
    try:
        assert ollama.Client is OptimizedOllama and ollama.AsyncClient is AsyncOptimizedOllama
        from ollama import chat, generate

        a = chat(LLM, messages=MSGS)
        b = ollama.chat(LLM, messages=MSGS)
        assert a == b and requests(server, "chat") == 1, "module-level calls go through the cache"
        assert generate(LLM, "hi").done
        assert isinstance(ollama.Client(), OptimizedOllama)
    finally:
        routing.undo()
    assert {n: getattr(ollama, n) for n in before} == before
    routing.undo()  # idempotent


def test_write_behind_hits_are_counted_by_the_cache_with_the_time_they_save(
    server: OllamaTestServer, tmp_path: Any
) -> None:
    """Issue 16 (Ollama part): hits served from the write-behind queue reach the cache's own counters, with
    the compute time the entry saves. The store is held shut, so every hit comes from the queue."""
    import threading

    from infra.cache import Cache, CacheConfig
    from infra.metrics import get_metrics

    gate = threading.Event()

    class HeldStore(Cache):
        def set(self, *a: Any, **k: Any) -> None:
            gate.wait(10)
            super().set(*a, **k)

    def ollama_hits(ns: str, op: str) -> float:
        fam = get_metrics().counter(
            "infra_ollama_cache_hits_total", "", labelnames=("namespace", "operation")
        )
        return float(fam.labels(ns, op).get())

    before = (ollama_hits("inference", "generate"), ollama_hits("embeddings", "embed"))
    with HeldStore(CacheConfig(path=str(tmp_path / "wb.db"))) as cache:
        llm = OptimizedOllama(server.url, settings=settings(write_behind=True), cache=cache)
        llm.generate(LLM, "count me")
        llm.embed(EMBED, ["a", "b"])
        for _ in range(5):
            llm.generate(LLM, "count me")
        llm.embed(EMBED, ["b", "a", "c"])  # two hits from the queue, one miss
        gate.set()
        llm.close()
        stats = cache.get_stats()["namespaces"]
    assert requests(server, "generate") == 1
    assert ollama_hits("inference", "generate") - before[0] == 5 == stats["inference"]["hits"]
    assert ollama_hits("embeddings", "embed") - before[1] == 2 == stats["embeddings"]["hits"]
    assert stats["inference"]["compute_seconds_saved"] > 0, "the call's time is stored with the entry"
    assert stats["embeddings"]["compute_seconds_saved"] > 0


def test_the_layer_does_not_advance_the_callers_random_sequence(server: OllamaTestServer, cache: Any) -> None:
    import random

    random.seed(7)
    expected = [random.random() for _ in range(3)]
    random.seed(7)
    llm = OptimizedOllama(server.url, settings=settings(), cache=cache)
    llm.generate(LLM, "random")
    llm.generate(LLM, "random")
    llm.close()
    assert [random.random() for _ in range(3)] == expected


def test_importing_infra_ollama_stays_lazy() -> None:
    import subprocess

    code = "import sys, infra.ollama; print(sorted({'ollama','httpx'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_memoized_hits_are_detached_copies_equal_to_the_first_reply(
    server: OllamaTestServer, cache: Any
) -> None:
    """Issue 18: the key memo and the reused response never hand one caller's mutations to the next."""
    llm = OptimizedOllama(server.url, settings=settings(), cache=cache)
    first = llm.generate(LLM, "memo", profile="stage1")
    a = llm.generate(LLM, "memo", profile="stage1")
    a.context.append(-1)
    a.response = "changed"
    b = llm.generate(LLM, "memo", profile="stage1")
    assert b == first and b.model_fields_set == first.model_fields_set and b is not a
    c1 = llm.chat(LLM, MSGS)
    c2 = llm.chat(LLM, [dict(m) for m in MSGS])
    c2.message.content = "changed"
    assert llm.chat(LLM, MSGS) == c1
    llm.close()
    assert requests(server, "generate") == 1 and requests(server, "chat") == 1
    assert llm.cache_stats()["generate"] == {"hits": 2, "misses": 1, "coalesced": 0}


def test_a_memoized_miss_is_counted_once_by_the_cache(server: OllamaTestServer, tmp_path: Any) -> None:
    from infra.cache import Cache, CacheConfig

    with Cache(CacheConfig(path=str(tmp_path / "m.db"))) as c:
        llm = OptimizedOllama(server.url, settings=settings(write_behind=False), cache=c)
        llm.generate(LLM, "once")  # a miss: the memo learns the key
        c.clear()
        llm.generate(LLM, "once")  # the memo's lookup misses; the plan must not look up again
        llm.close()
        stats = c.get_stats()
    ns = stats.get("namespaces", {}).get("inference", stats)
    assert ns["misses"] == 2 and requests(server, "generate") == 2


def test_calls_that_read_files_are_not_memoized(server: OllamaTestServer, cache: Any, tmp_path: Any) -> None:
    """An image given as a path is read at call time: a changed file must be a new request."""
    img = tmp_path / "img.png"
    img.write_bytes(b"\x89PNG first")
    llm = OptimizedOllama(server.url, settings=settings(), cache=cache)
    llm.generate(LLM, "describe", images=[str(img)])
    img.write_bytes(b"\x89PNG second")
    llm.generate(LLM, "describe", images=[str(img)])
    llm.close()
    assert requests(server, "generate") == 2


@pytest.mark.parametrize(
    "reply",
    [
        ollama.GenerateResponse(model="m", response="r", done=True, context=[1, 2, 3], eval_count=3),
        ollama.ChatResponse(
            model="m",
            done=True,
            message={
                "role": "assistant",
                "content": "c",
                "tool_calls": [{"function": {"name": "f", "arguments": {"a": [1]}}}],
            },
            logprobs=[{"token": "c", "logprob": -0.1, "top_logprobs": [{"token": "c", "logprob": -0.1}]}],
        ),
    ],
)
def test_the_fast_reply_copy_agrees_with_its_reference(reply: Any) -> None:
    """detacher (the hot path's written-out copy) against detached and pydantic's deep copy."""
    from infra.ollama._helpers import detached, detacher

    fast = detacher(reply)()
    for copy in (fast, detached(reply)):
        assert copy == reply == reply.model_copy(deep=True) and copy is not reply
        assert copy.model_fields_set == reply.model_fields_set
        assert copy.model_dump_json() == reply.model_dump_json()
    mutable = [k for k, v in reply.__dict__.items() if isinstance(v, (list, dict, BaseModel))]
    assert mutable and all(getattr(fast, k) is not getattr(reply, k) for k in mutable), "nothing shared"


def test_with_the_layer_off_a_profile_still_means_its_sampling_options(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/chat").respond_with_json(REPLY)
    llm = OptimizedOllama(httpserver.url_for("/"), settings=settings(enabled=False))
    llm.chat("dummy", MSGS, profile="stage1", options={"temperature": 0.9})
    llm.close()
    ((req, _),) = httpserver.log
    body = json.loads(req.get_data())
    assert body["options"] == {"num_predict": 120, "temperature": 0.9} and "keep_alive" not in body
