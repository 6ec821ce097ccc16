"""OptimizedOllama / AsyncOptimizedOllama against the Ollama test server, with the real infra.cache."""

from __future__ import annotations

import itertools
import logging
import statistics
import threading
import time
from typing import Any

import httpx
import ollama
import pytest
from ollama_testutil import EMBED, LLM, settings

from infra.ollama import AsyncOptimizedOllama, OllamaRunnerError, OptimizedOllama
from infra.ollama.runner import physical_cores
from infra.testing.ollama_server import OllamaTestServer

MSGS = [{"role": "system", "content": "You are kind."}, {"role": "user", "content": "I walked by the sea."}]


@pytest.fixture
def llm(server: OllamaTestServer, cache: Any) -> Any:
    c = OptimizedOllama(server.url, settings=settings(), cache=cache)
    yield c
    c.close()


def requests(srv: OllamaTestServer, endpoint: str) -> int:
    return int(srv.stats()["requests"].get(endpoint, 0))


# ------------------------------------------------------------------------------------------ cache hits


def test_a_cached_generate_equals_the_original_and_skips_the_server(
    llm: Any, server: OllamaTestServer
) -> None:
    first = llm.generate(LLM, "Reflect on the sea.", profile="stage1")
    again = llm.generate(LLM, "Reflect on the sea.", profile="stage1")
    assert isinstance(again, ollama.GenerateResponse)
    assert again == first and again.model_fields_set == first.model_fields_set
    assert requests(server, "generate") == 1


def test_a_cached_chat_equals_the_original(llm: Any, server: OllamaTestServer) -> None:
    first = llm.chat(LLM, MSGS, profile="stage2")
    again = llm.chat(LLM, MSGS, profile="stage2")
    assert isinstance(again, ollama.ChatResponse) and again == first
    assert again.message.content == first.message.content
    assert requests(server, "chat") == 1


def test_a_cached_stream_replays_the_same_chunks(llm: Any, server: OllamaTestServer) -> None:
    first = list(llm.chat(LLM, MSGS, stream=True))
    again = list(llm.chat(LLM, MSGS, stream=True))
    assert again == first and all(isinstance(p, ollama.ChatResponse) for p in again)
    assert again[-1].done and requests(server, "chat") == 1


def test_a_cache_hit_survives_a_new_process_view_of_the_same_store(
    server: OllamaTestServer, tmp_path: Any
) -> None:
    """Values go through the safe codec to SQLite, and come back as the same pydantic types."""
    from infra.cache import Cache, CacheConfig

    path = str(tmp_path / "shared.db")
    with Cache(CacheConfig(path=path)) as c1:
        a = OptimizedOllama(server.url, settings=settings(), cache=c1)
        first = a.generate(LLM, "persist me")
        a.close()
    with Cache(CacheConfig(path=path)) as c2:
        b = OptimizedOllama(server.url, settings=settings(), cache=c2)
        again = b.generate(LLM, "persist me")
        b.close()
    assert again == first and requests(server, "generate") == 1


OUTPUT_OPTIONS = [
    ("temperature", 0.9),
    ("top_k", 5),
    ("top_p", 0.5),
    ("min_p", 0.1),
    ("typical_p", 0.7),
    ("repeat_penalty", 1.3),
    ("repeat_last_n", 8),
    ("presence_penalty", 0.5),
    ("frequency_penalty", 0.5),
    ("seed", 42),
    ("stop", ["\n"]),
    ("num_predict", 7),
    ("num_ctx", 8192),
]


@pytest.mark.parametrize(("name", "value"), OUTPUT_OPTIONS)
def test_changing_an_output_affecting_option_misses(
    server: OllamaTestServer, cache: Any, name: str, value: Any
) -> None:
    # no pinned runner options here, so num_ctx may vary per call
    llm = OptimizedOllama(server.url, settings=settings(runner={}), cache=cache)
    base = {"temperature": 0.3, "num_predict": 20}
    llm.generate(LLM, "same prompt", options=base)
    llm.generate(LLM, "same prompt", options={**base, name: value})
    llm.close()
    assert requests(server, "generate") == 2


@pytest.mark.parametrize(
    "change",
    [
        {"system": "other system"},
        {"format": "json"},
        {"think": True},  # on a thinking model (see below)
        {"template": "{{ .Prompt }}!"},
        {"suffix": "end"},  # on a fill-in-middle model (see below)
        {"raw": True},
        {"images": [b"\x89PNG fake image"]},
        {"prompt": "another prompt"},
        {"model": "qwen2.5:7b"},
    ],
)
def test_changing_any_request_field_misses(
    server: OllamaTestServer, cache: Any, change: dict[str, Any]
) -> None:
    llm = OptimizedOllama(server.url, settings=settings(), cache=cache)
    # the server refuses think / suffix for models lacking "thinking" / "insert", as Ollama does
    model = {"think": "qwen3:8b", "suffix": "codellama:7b-code"}.get(next(iter(change)), LLM)
    llm.pull(model)
    call: dict[str, Any] = {"model": model, "prompt": "same prompt"}
    llm.generate(**call)
    llm.generate(**{**call, **change})
    llm.close()
    assert requests(server, "generate") == 2


def test_chat_key_covers_messages_tools_and_images(llm: Any, server: OllamaTestServer) -> None:
    tools = [{"type": "function", "function": {"name": "lookup"}}]
    llm.chat(LLM, MSGS)
    llm.chat(LLM, [*MSGS[:1], {"role": "user", "content": "I walked by the lake."}])
    llm.chat(LLM, MSGS, tools=tools)
    llm.chat(LLM, [{**MSGS[1], "images": [b"img-a"]}])
    llm.chat(LLM, [{**MSGS[1], "images": [b"img-b"]}])
    assert requests(server, "chat") == 5
    llm.chat(LLM, [{**MSGS[1], "images": [b"img-b"]}])
    assert requests(server, "chat") == 5


@pytest.mark.parametrize(
    "runner_change", [{"num_thread": 2}, {"num_batch": 64}, {"num_gpu": 0}, {"use_mmap": False}]
)
def test_changing_a_runner_only_option_or_keep_alive_hits(
    server: OllamaTestServer, cache: Any, runner_change: dict[str, Any]
) -> None:
    llm = OptimizedOllama(server.url, settings=settings(runner={}), cache=cache)
    first = llm.generate(LLM, "same prompt", options={"temperature": 0.3}, keep_alive="5m")
    again = llm.generate(LLM, "same prompt", options={"temperature": 0.3, **runner_change}, keep_alive="1h")
    llm.close()
    assert again == first and requests(server, "generate") == 1


def test_an_entry_from_another_model_digest_is_a_miss(server: OllamaTestServer, cache: Any) -> None:
    """Re-creating the model (a new digest) through the client makes its old entries misses."""
    from infra.ollama.digests import BOOK

    BOOK.forget()
    llm = OptimizedOllama(server.url, settings=settings(), cache=cache)
    first = llm.generate(LLM, "digest")
    assert llm.generate(LLM, "digest") == first and requests(server, "generate") == 1
    llm.create(model=LLM, from_=LLM, system="You are brief.")  # a new manifest: a new digest
    llm.generate(LLM, "digest")
    assert requests(server, "generate") == 2, "the entry tagged with the old digest was not served"
    llm.generate(LLM, "digest")
    llm.close()
    assert requests(server, "generate") == 2 and requests(server, "tags") == 2, "one read per listing"


def test_only_deterministic_caches_only_temperature_zero_or_a_seed(
    server: OllamaTestServer, cache: Any
) -> None:
    llm = OptimizedOllama(server.url, settings=settings(cache_kw={"only_deterministic": True}), cache=cache)
    for _ in range(2):
        llm.generate(LLM, "sampled", options={"temperature": 0.8})
    assert requests(server, "generate") == 2
    for _ in range(2):
        llm.generate(LLM, "seeded", options={"temperature": 0.8, "seed": 7})
    for _ in range(2):
        llm.generate(LLM, "greedy", options={"temperature": 0})
    llm.close()
    assert requests(server, "generate") == 4


def test_cache_false_per_call_and_disabled_endpoints_skip_the_cache(
    server: OllamaTestServer, cache: Any
) -> None:
    llm = OptimizedOllama(server.url, settings=settings(cache_kw={"chat": False}), cache=cache)
    llm.generate(LLM, "x", cache=False)
    llm.generate(LLM, "x", cache=False)
    llm.chat(LLM, MSGS)
    llm.chat(LLM, MSGS)
    llm.close()
    assert requests(server, "generate") == 2 and requests(server, "chat") == 2


# -------------------------------------------------------------------------------- what is never stored


def test_an_aborted_stream_is_not_stored(llm: Any, server: OllamaTestServer) -> None:
    it = llm.generate(LLM, "abort me", stream=True)
    next(it)
    next(it)
    it.close()  # the caller stops reading
    full = list(llm.generate(LLM, "abort me", stream=True))
    assert requests(server, "generate") == 2 and full[-1].done
    list(llm.generate(LLM, "abort me", stream=True))
    assert requests(server, "generate") == 2, "the completed stream was stored"


def test_a_stream_that_errors_midway_is_not_stored(llm: Any, server: OllamaTestServer) -> None:
    server.error_mid_stream(after=2)
    with pytest.raises(ollama.ResponseError):
        list(llm.chat(LLM, MSGS, stream=True))
    list(llm.chat(LLM, MSGS, stream=True))
    assert requests(server, "chat") == 2


def test_errors_and_load_replies_are_never_stored(llm: Any, server: OllamaTestServer) -> None:
    server.fail_next(500, "boom")
    with pytest.raises(ollama.ResponseError):
        llm.generate(LLM, "fails once")
    assert llm.generate(LLM, "fails once").done
    assert requests(server, "generate") == 2
    assert llm.generate(LLM, "").done_reason == "load"
    assert llm.generate(LLM, "").done_reason == "load"
    assert requests(server, "generate") == 4


# --------------------------------------------------------------------------------------- replay timing


def test_paced_replay_keeps_the_recorded_inter_chunk_timing(make_server, cache: Any) -> None:  # type: ignore[no-untyped-def]
    srv = make_server(token_latency=0.03, min_tokens=12, max_tokens=12)
    llm = OptimizedOllama(srv.url, settings=settings(cache_kw={"replay": "paced"}), cache=cache)

    def timed_stream() -> list[float]:
        stamps = []
        for _ in llm.generate(LLM, "pace me", stream=True):
            stamps.append(time.perf_counter())
        return [b - a for a, b in itertools.pairwise(stamps)]

    recorded = timed_stream()
    replayed = timed_stream()
    llm.close()
    assert requests(srv, "generate") == 1
    assert len(replayed) == len(recorded)
    assert sum(replayed) == pytest.approx(sum(recorded), rel=0.2)
    assert statistics.median(replayed) == pytest.approx(statistics.median(recorded), rel=0.2)


def test_instant_replay_returns_the_chunks_at_once(make_server, cache: Any) -> None:  # type: ignore[no-untyped-def]
    srv = make_server(token_latency=0.02, min_tokens=10, max_tokens=10)
    llm = OptimizedOllama(srv.url, settings=settings(), cache=cache)
    t0 = time.perf_counter()
    first = list(llm.generate(LLM, "instant", stream=True))
    streamed = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = list(llm.generate(LLM, "instant", stream=True))
    replayed = time.perf_counter() - t0
    llm.close()
    assert again == first
    assert replayed < streamed / 2  # not a benchmark: the recorded stream took >= 10 x 20 ms


# ------------------------------------------------------------------------------------------ embeddings


def test_a_partially_cached_embed_batch_sends_only_the_missing_items(
    llm: Any, server: OllamaTestServer, client: Any
) -> None:
    llm.embed(EMBED, ["a", "b"])
    before = server.stats()["embed_inputs"]
    r = llm.embed(EMBED, ["a", "c", "b", "d", "c", "a"])
    assert server.stats()["embed_inputs"] - before == 2, "only c and d are computed, once each"
    assert requests(server, "embed") == 2
    direct = client(server.url).embed(EMBED, ["a", "c", "b", "d", "c", "a"])
    assert isinstance(r, ollama.EmbedResponse)
    assert [list(v) for v in r.embeddings] == [list(v) for v in direct.embeddings], "input order kept"


def test_a_fully_cached_embed_batch_makes_no_request(llm: Any, server: OllamaTestServer) -> None:
    first = llm.embed(EMBED, "solo")
    again = llm.embed(EMBED, "solo")
    assert list(again.embeddings[0]) == list(first.embeddings[0])
    assert requests(server, "embed") == 1
    again.embeddings[0][0] = 123.0  # mutating a result must not change the cache
    assert llm.embed(EMBED, "solo").embeddings[0][0] != 123.0


def test_embed_options_and_dimensions_are_in_the_item_key(llm: Any, server: OllamaTestServer) -> None:
    llm.embed(EMBED, ["x"])
    llm.embed(EMBED, ["x"], dimensions=32)
    llm.embed(EMBED, ["x"], truncate=False)
    assert requests(server, "embed") == 3


def test_legacy_embeddings_are_cached(llm: Any, server: OllamaTestServer) -> None:
    a = llm.embeddings(EMBED, "legacy")
    b = llm.embeddings(EMBED, "legacy")
    assert a == b and isinstance(b, ollama.EmbeddingsResponse) and requests(server, "embeddings") == 1


# -------------------------------------------------------------------------------------- runner pinning


def test_pinned_runner_options_mean_zero_reloads_over_200_mixed_calls(make_server, cache: Any) -> None:  # type: ignore[no-untyped-def]
    srv = make_server(load_time=0.001)
    llm = OptimizedOllama(srv.url, settings=settings(runner={"num_thread": 6, "num_ctx": 4096}), cache=cache)
    profiles = [None, "stage1", "stage2"]
    for i in range(200):
        kind = i % 5
        if kind == 0:
            llm.generate(LLM, f"g{i % 37}", profile=profiles[i % 3], cache=i % 2 == 0)
        elif kind == 1:
            llm.chat(LLM, [{"role": "user", "content": f"c{i}"}], profile=profiles[i % 3])
        elif kind == 2:
            list(llm.generate(LLM, f"s{i}", stream=True, options={"temperature": 0.1 * (i % 4)}))
        elif kind == 3:
            llm.embed(EMBED, [f"e{i}", f"e{i + 1}"])
        else:
            llm.chat(LLM, MSGS, options={"top_k": i % 7 + 1}, keep_alive="10m", cache=False)
    llm.close()
    assert srv.stats()["reloads"] == 0, srv.reload_log()
    assert srv.stats()["loads"] == 2  # the LLM and the embedding model, once each


def test_without_pinning_mixed_calls_do_reload(make_server, client: Any) -> None:  # type: ignore[no-untyped-def]
    """The failure the pinning prevents: the raw client with per-call num_ctx reloads the model."""
    srv = make_server()
    raw = client(srv.url)
    raw.generate(LLM, "a", options={"num_ctx": 8192})
    raw.generate(LLM, "b")
    raw.generate(LLM, "c", options={"num_ctx": 8192})
    assert srv.stats()["reloads"] == 2


def test_a_callers_runner_option_is_sent_as_given_and_logged_once(
    make_server: Any, cache: Any, caplog: Any
) -> None:
    """Issue 15: a caller's num_ctx (e.g. LlamaIndex's 3900) is never replaced by the pinned 4096."""
    srv = make_server()
    llm = OptimizedOllama(srv.url, settings=settings(runner={"num_ctx": 4096}), cache=cache)
    with caplog.at_level(logging.WARNING, logger="infra.ollama"):
        llm.generate(LLM, "second", options={"num_ctx": 3900})
        (loaded,) = llm.ps().models
        assert loaded.context_length == 3900, "the caller's value was sent"
        llm.generate(LLM, "third", options={"num_ctx": 3900})
        llm.generate(LLM, "fourth")
        (loaded,) = llm.ps().models
        assert loaded.context_length == 4096, "a call without num_ctx gets the pinned value"
    llm.close()
    assert sum("num_ctx=3900 differs" in r.getMessage() for r in caplog.records) == 1, "logged once"


def test_strict_runner_raises_before_any_request(make_server, cache: Any) -> None:  # type: ignore[no-untyped-def]
    srv = make_server()
    llm = OptimizedOllama(
        srv.url, settings=settings(runner={"num_ctx": 4096}, strict_runner=True), cache=cache
    )
    with pytest.raises(OllamaRunnerError, match="num_ctx"):
        llm.chat(LLM, MSGS, options={"num_ctx": 2048})
    llm.close()
    assert requests(srv, "chat") == 0


def test_profiles_set_sampling_options_and_call_options_win(llm: Any) -> None:
    policy = llm.runner_policy
    merged = policy.merge(LLM, {"temperature": 0.9}, "stage1")
    assert merged == {"num_predict": 120, "temperature": 0.9, "num_thread": physical_cores(), "num_ctx": 4096}
    assert policy.merge(LLM, {"num_ctx": 2048, "num_thread": 1}, None) == {
        "num_ctx": 2048,
        "num_thread": 1,
    }
    with pytest.raises(ValueError, match="unknown Ollama profile 'stage9'"):
        llm.generate(LLM, "x", profile="stage9")


def test_per_model_runner_overrides(server: OllamaTestServer, cache: Any) -> None:
    llm = OptimizedOllama(
        server.url,
        settings=settings(runner={"num_ctx": 4096, "nomic-embed-text": {"num_ctx": 8192}}),
        cache=cache,
    )
    assert llm.runner_policy.pinned(EMBED) == {"num_ctx": 8192}
    assert llm.runner_policy.pinned(LLM) == {"num_ctx": 4096}
    llm.close()


# --------------------------------------------------------------------------- timeouts, retries, limits


def test_the_timeout_is_enforced(server: OllamaTestServer, cache: Any) -> None:
    llm = OptimizedOllama(server.url, settings=settings(timeout=0.3), cache=cache)
    server.stall_next(3.0)
    t0 = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        llm.generate(LLM, "hang")
    assert time.perf_counter() - t0 < 2.5, "gave up at the timeout, not when the server answered"
    llm.close()


def test_busy_replies_are_retried_before_the_first_token(llm: Any, server: OllamaTestServer) -> None:
    server.fail_next(503, "server busy, please try again. maximum pending requests exceeded", times=2)
    assert llm.generate(LLM, "retry me").done
    assert requests(server, "generate") == 3
    server.fail_next(503, "busy", times=2, endpoint="chat")
    assert list(llm.chat(LLM, MSGS, stream=True))[-1].done
    assert requests(server, "chat") == 3


def test_client_errors_and_mid_stream_failures_are_not_retried(llm: Any, server: OllamaTestServer) -> None:
    with pytest.raises(ollama.ResponseError):
        llm.generate("missing:1b", "x")
    assert requests(server, "generate") == 1
    server.error_mid_stream(after=1)
    with pytest.raises(ollama.ResponseError):
        list(llm.generate(LLM, "no retry after a token", stream=True))
    assert requests(server, "generate") == 2


def test_retries_give_up_after_the_configured_count(server: OllamaTestServer, cache: Any) -> None:
    llm = OptimizedOllama(server.url, settings=settings(retries=1), cache=cache)
    server.fail_next(503, "busy", times=5)
    with pytest.raises(ollama.ResponseError):
        llm.generate(LLM, "x")
    llm.close()
    assert requests(server, "generate") == 2


def test_the_concurrency_limit_bounds_requests_in_flight(make_server, cache: Any) -> None:  # type: ignore[no-untyped-def]
    srv = make_server(token_latency=0.005, num_parallel=8)
    llm = OptimizedOllama(srv.url, settings=settings(max_concurrency=2), cache=cache)
    threads = [threading.Thread(target=llm.generate, args=(LLM, f"p{i}")) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    llm.close()
    assert srv.stats()["completed"] == 8 and srv.stats()["max_in_flight"] == 2


# ------------------------------------------------------------------------------ warmup, off, fail-open


def test_warmup_loads_models_through_chat_with_one_token(server: OllamaTestServer, llm: Any) -> None:
    t = llm.warmup([LLM, EMBED], system_prompt="You are kind.")
    t.join(10)
    assert server.stats()["loads"] == 2
    assert requests(server, "chat") == 1 and requests(server, "embed") == 1
    assert server.stats()["tokens"] == 1
    assert {m.model for m in llm.ps().models} == {LLM, EMBED}


def test_keep_warm_reloads_before_expiry(server: OllamaTestServer, cache: Any) -> None:
    # refreshes come when < 2 intervals (0.6 s) of the 1 s keep_alive remain: 0.4 s of slack each time
    llm = OptimizedOllama(server.url, settings=settings(keep_alive=1.0), cache=cache)
    kw = llm.keep_warm([LLM], interval=0.3)
    deadline = time.monotonic() + 8
    while kw.refreshes < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    kw.stop()
    llm.close()
    assert kw.refreshes >= 3 and server.stats()["loads"] == 1, "kept loaded: one load, several refreshes"


def test_disabled_is_a_plain_pass_through(server: OllamaTestServer, cache: Any) -> None:
    llm = OptimizedOllama(server.url, settings=settings(enabled=False, runner={"num_ctx": 4096}), cache=cache)
    a = llm.generate(LLM, "plain", options={"num_ctx": 8192})
    b = llm.generate(LLM, "plain", options={"num_ctx": 8192})
    llm.close()
    assert a.response == b.response and requests(server, "generate") == 2
    (loaded,) = ollama.ProcessResponse.model_validate(httpx.get(f"{server.url}/api/ps").json()).models
    assert loaded.context_length == 8192, "the call's own options were sent unchanged"


class BrokenCache:
    """A cache whose every operation raises: the layer must fail open."""

    def __getattr__(self, name: str) -> Any:
        def boom(*a: Any, **k: Any) -> Any:
            raise RuntimeError("cache store is gone")

        return boom


def test_a_failing_cache_never_changes_the_result(server: OllamaTestServer, caplog: Any) -> None:
    llm = OptimizedOllama(server.url, settings=settings(), cache=BrokenCache())
    with caplog.at_level(logging.WARNING, logger="infra.ollama"):
        a = llm.generate(LLM, "fail open")
        b = llm.generate(LLM, "fail open")
        e = llm.embed(EMBED, ["x", "y"])
    llm.close()
    assert a.response == b.response and len(e.embeddings) == 2
    assert sum("cache failed" in r.getMessage() for r in caplog.records) == 1, "logged once"


# ------------------------------------------------------------------------------------------ async twin


async def test_async_cached_calls_equal_the_originals(server: OllamaTestServer, cache: Any) -> None:
    llm = AsyncOptimizedOllama(server.url, settings=settings(), cache=cache)
    g1 = await llm.generate(LLM, "async", profile="stage1")
    g2 = await llm.generate(LLM, "async", profile="stage1")
    c1 = await llm.chat(LLM, MSGS)
    c2 = await llm.chat(LLM, MSGS)
    s1 = [p async for p in await llm.chat(LLM, MSGS, stream=True)]
    s2 = [p async for p in await llm.chat(LLM, MSGS, stream=True)]
    assert (g1, c1, s1) == (g2, c2, s2)
    assert isinstance(g2, ollama.GenerateResponse) and isinstance(s2[0], ollama.ChatResponse)
    assert requests(server, "generate") == 1 and requests(server, "chat") == 2
    await llm.close()


async def test_async_partial_embed_batch_and_aborted_stream(server: OllamaTestServer, cache: Any) -> None:
    llm = AsyncOptimizedOllama(server.url, settings=settings(), cache=cache)
    await llm.embed(EMBED, ["a", "b"])
    before = server.stats()["embed_inputs"]
    r = await llm.embed(EMBED, ["b", "c", "c", "a"])
    assert server.stats()["embed_inputs"] - before == 1 and len(r.embeddings) == 4
    assert r.embeddings[1] == r.embeddings[2]
    it = await llm.generate(LLM, "abort async", stream=True)
    await it.__anext__()
    await it.aclose()
    assert [p async for p in await llm.generate(LLM, "abort async", stream=True)][-1].done
    assert requests(server, "generate") == 2
    await llm.close()


async def test_async_timeout_retries_and_strict_runner(server: OllamaTestServer, cache: Any) -> None:
    llm = AsyncOptimizedOllama(server.url, settings=settings(timeout=0.3, strict_runner=True), cache=cache)
    server.stall_next(3.0)
    with pytest.raises(httpx.ReadTimeout):
        await llm.generate(LLM, "hang")
    server.fail_next(503, "busy", times=1)
    assert (await llm.generate(LLM, "retry")).done
    with pytest.raises(OllamaRunnerError):
        await llm.generate(LLM, "x", options={"num_thread": 1})
    await llm.close()


async def test_async_warmup_and_paced_replay(make_server, cache: Any) -> None:  # type: ignore[no-untyped-def]
    srv = make_server(token_latency=0.03, min_tokens=10, max_tokens=10)
    llm = AsyncOptimizedOllama(srv.url, settings=settings(cache_kw={"replay": "paced"}), cache=cache)
    await llm.warmup([LLM])
    assert srv.stats()["loads"] == 1

    async def gaps() -> list[float]:
        stamps = [time.perf_counter() async for _ in await llm.generate(LLM, "pace", stream=True)]
        return [b - a for a, b in itertools.pairwise(stamps)]

    recorded, replayed = await gaps(), await gaps()
    assert sum(replayed) == pytest.approx(sum(recorded), rel=0.2)
    await llm.close()


# ---------------------------------------------------------------------------------------------- configuration


def test_settings_come_from_the_shipped_config() -> None:
    from infra.config import load_config

    llm = OptimizedOllama(load_config().ollama)
    s = llm.settings
    assert (s.keep_alive, s.timeout, s.retries, s.max_concurrency) == (1800.0, 120.0, 2, 4)
    assert llm.runner_policy.pinned(LLM) == {"num_thread": physical_cores(), "num_ctx": 4096}, (
        "num_thread auto: the machine's"
    )
    assert dict(s.profiles["stage1"]) == {"num_predict": 120, "temperature": 0.3}
    assert s.cache.namespace == "inference" and s.cache.embed_namespace == "embeddings"
    llm.close()


def test_keep_alive_defaults_to_the_configured_value(server: OllamaTestServer, cache: Any) -> None:
    llm = OptimizedOllama(server.url, settings=settings(keep_alive="45m"), cache=cache)
    llm.generate(LLM, "keep me")
    (loaded,) = llm.ps().models
    assert 2600 < loaded.expires_at.timestamp() - time.time() <= 2700
    llm.close()


def test_bad_settings_name_every_problem() -> None:
    from infra.ollama import OllamaCacheConfig, OllamaConfig

    with pytest.raises(ValueError, match=r"(?s)ollama\.timeout.*ollama\.retries.*ollama\.max_concurrency"):
        OllamaConfig(timeout=0, retries=-1, max_concurrency=0)
    with pytest.raises(ValueError, match=r"ollama\.cache\.replay: expected one of instant, paced"):
        OllamaCacheConfig(replay="fast")


def test_metrics_count_hits_misses_retries_and_unexpected_reloads(make_server, cache: Any) -> None:  # type: ignore[no-untyped-def]
    from infra.metrics import get_metrics

    model = "qwen2.5:7b"  # metrics are process-wide: a model no other test uses, and deltas
    m = get_metrics()

    def val(name: str, labels: tuple[str, ...], *values: str) -> float:
        return float(m.counter(name, "", labelnames=labels).labels(*values).get())

    probes = {
        "hits": ("infra_ollama_cache_hits_total", ("namespace", "operation"), "inference", "generate"),
        "misses": ("infra_ollama_cache_misses_total", ("namespace", "operation"), "inference", "generate"),
        "retries": ("infra_ollama_retries_total", ("model", "operation"), model, "generate"),
        "reloads": ("infra_ollama_unexpected_reloads_total", ("model",), model),
    }
    before = {k: val(n, lab, *v) for k, (n, lab, *v) in probes.items()}
    srv = make_server(load_time=0.3)
    llm = OptimizedOllama(srv.url, settings=settings(runner={}), cache=cache)
    llm.generate(model, "m1")  # miss; first load is expected
    llm.generate(model, "m1")  # hit
    srv.fail_next(503, "busy")
    llm.generate(model, "m2", options={"num_ctx": 8192})  # miss, one retry, and a reload of a warm model
    llm.close()
    delta = {k: val(n, lab, *v) - before[k] for k, (n, lab, *v) in probes.items()}
    assert delta == {"hits": 1, "misses": 2, "retries": 1, "reloads": 1}
    assert llm.cache_stats()["generate"] == {"hits": 1, "misses": 2, "coalesced": 0}


# ---------------------------------------------------------------------------------------------- single-flight


def test_identical_concurrent_calls_share_one_request(make_server, cache: Any) -> None:  # type: ignore[no-untyped-def]
    srv = make_server(token_latency=0.01, min_tokens=20, max_tokens=20)
    llm = OptimizedOllama(srv.url, settings=settings(max_concurrency=8), cache=cache)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(llm.generate(LLM, "same"))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = llm.cache_stats()["generate"]
    llm.close()
    assert requests(srv, "generate") == 1
    assert len(results) == 6 and all(r == results[0] for r in results)
    assert len({id(r) for r in results}) == 6, "each caller gets its own object"
    assert stats["misses"] == 1 and stats["coalesced"] + stats["hits"] == 5


def test_when_the_shared_call_fails_each_waiter_calls_for_itself(make_server, cache: Any) -> None:  # type: ignore[no-untyped-def]
    srv = make_server(token_latency=0.01, min_tokens=20, max_tokens=20)
    llm = OptimizedOllama(srv.url, settings=settings(max_concurrency=8, retries=0), cache=cache)
    srv.fail_next(500, "first one fails")
    outcomes: list[str] = []

    def one() -> None:
        try:
            llm.chat(LLM, MSGS)
            outcomes.append("ok")
        except ollama.ResponseError:
            outcomes.append("error")

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    llm.close()
    assert sorted(outcomes) == ["error", "ok", "ok", "ok"]


async def test_async_identical_concurrent_calls_share_one_request(make_server, cache: Any) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    srv = make_server(token_latency=0.01, min_tokens=20, max_tokens=20)
    llm = AsyncOptimizedOllama(srv.url, settings=settings(max_concurrency=8), cache=cache)
    results = await asyncio.gather(*(llm.chat(LLM, MSGS, profile="stage2") for _ in range(5)))
    assert requests(srv, "chat") == 1 and all(r == results[0] for r in results)
    assert llm.cache_stats()["chat"]["coalesced"] == 4
    await llm.close()


# ---------------------------------------------------------------------------------------------- write-behind


@pytest.mark.parametrize("write_behind", [True, False])
def test_stores_are_visible_to_the_client_at_once_and_to_the_store_after_flush(
    server: OllamaTestServer, tmp_path: Any, write_behind: bool
) -> None:
    from infra.cache import Cache, CacheConfig

    path = str(tmp_path / "wb.db")
    with Cache(CacheConfig(path=path)) as c1, Cache(CacheConfig(path=path, memory_items=0)) as c2:
        llm = OptimizedOllama(server.url, settings=settings(write_behind=write_behind), cache=c1)
        first = llm.generate(LLM, "write me")
        assert llm.generate(LLM, "write me") == first  # read-your-writes, queued or not
        e = llm.embed(EMBED, ["w1", "w2"])
        assert llm.flush(10)
        other = OptimizedOllama(server.url, settings=settings(), cache=c2)
        assert other.generate(LLM, "write me") == first
        assert other.embed(EMBED, ["w2", "w1"]).embeddings == [e.embeddings[1], e.embeddings[0]]
        other.close()
        llm.close()
    assert requests(server, "generate") == 1 and requests(server, "embed") == 1
