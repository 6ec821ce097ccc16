"""perf-infra integration examples: copy the body of the one you need into your worker.

Every ``example_*`` function runs as is (``python INTEGRATION_EXAMPLES.py`` runs them all, the tests run
each one): it starts the local stand-ins it needs (the Ollama API test server, the TTS / STT / search /
song stubs from ``examples/stubs.py``) on 127.0.0.1, keeps its cache in a temporary directory, and puts the
process back as it found it. In your worker, the servers are your real ones and the config is your
``config/perf_config.json``.

1. ``example_three_line_worker_change``  seed 004's three lines: cached classes from ``wrap`` in the config
2. ``example_patch_without_changing_imports``  ``patch()`` for a worker whose imports can't change
3. ``example_enable_report_and_undo``  ``enable()``: what it did, ``enabled: false``, undo
4. ``example_cache_any_function``  ``@cached`` on functions and methods, ``cached_class``
5. ``example_http_client``  pooled, retrying ``PerfClient`` / ``AsyncPerfClient``
6. ``example_ollama_client``  ``OptimizedOllama``: profiles, pinned runner options, cached calls
7. ``example_metrics_in_fastapi``  /metrics (Prometheus) and the seed's JSON stats route in FastAPI
8. ``example_metrics_in_aiohttp``  /metrics in an aiohttp app
9. ``example_metrics_thread_server``  /metrics from a background thread, for workers without a web app
10. ``example_seed_004_stats_snippets``  ``get_cache().get_stats()`` / ``get_metrics().get_stats()``
11. ``example_hot_path_helpers``  ``gather_ordered``, token budget, precomputed audio frames
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Latency scale of the stand-in services in these examples (1.0 = realistic; small keeps them quick).
SCALE = 0.05


# ----------------------------------------------------------------------------------------------- 1
def example_three_line_worker_change() -> dict[str, Any]:
    """Seed 004's three-line change: the classes listed under ``wrap`` in perf_config come back cached.

    perf_config.json (here: examples/perf_config.json) lists them::

        "wrap": [{"target": "examples.enrichment.scorer:HybridScorer", "methods": ["score"],
                  "namespace": "emotion_scoring", "ttl": "30d"}, ...]

    and the worker adds, after its imports (the rest of the worker stays exactly the same; the full
    file is examples/enrichment_worker_cached.py)::

        from infra.enrichment_helpers import enable_caching_for_worker
        cached_classes = enable_caching_for_worker()
        HybridScorer = cached_classes["HybridScorer"]  # NEW - with caching
        PostEnricher = cached_classes["PostEnricher"]  # NEW - with caching
    """
    with _sandbox() as servers:
        from infra.enrichment_helpers import enable_caching_for_worker

        cached_classes = enable_caching_for_worker()

        HybridScorer = cached_classes["HybridScorer"]  # NEW - with caching
        PostEnricher = cached_classes["PostEnricher"]  # NEW - with caching

        scorer, enricher = HybridScorer(), PostEnricher()
        text = "feeling stressed and overwhelmed by the deadline"
        before = servers.work()["ollama_requests"]
        first = scorer.score(text)
        story = enricher.enrich(text, first["top"])
        cold_requests = servers.work()["ollama_requests"] - before
        before = servers.work()["ollama_requests"]
        assert scorer.score(text) == first and enricher.enrich(text, first["top"]) == story
        warm_requests = servers.work()["ollama_requests"] - before
        scorer.close()
        enricher.close()
        print(
            f"three-line worker: top emotion {first['top']!r}; Ollama requests cold {cold_requests}, "
            f"warm {warm_requests}"
        )
        return {"top": first["top"], "cold_requests": cold_requests, "warm_requests": warm_requests}


# ----------------------------------------------------------------------------------------------- 2
def example_patch_without_changing_imports() -> dict[str, Any]:
    """``patch()``: cache the ``wrap`` methods on the classes themselves, before the worker runs, when the
    worker's imports can't change (a third-party entry point, a framework that imports your classes)::

        from infra.integrate import patch      # also: infra.patch
        handle = patch()
        ...the unchanged pipeline runs...
        handle.undo()                          # the classes are exactly as before

    Here: the seed-000 voice turn (STT over a WebSocket, memory search, LLM, TTS), untouched.
    """
    with _sandbox() as servers:
        from examples.voice.audio import speak
        from examples.voice.turn import run_turns
        from infra.integrate import patch

        handle = patch()
        audio = [speak("how was my week"), speak("remind me about Mina"), speak("how was my week")]
        asyncio.run(run_turns(audio))
        before = servers.work()
        turns = asyncio.run(run_turns(audio))
        after = servers.work()
        patched = [r.label for r in handle.patches]
        handle.undo()
        print(
            f"patched {len(patched)} classes; warm turns asked the services "
            f"{after['stub_requests'] - before['stub_requests']} times; reply: {turns[0]['reply'][:40]!r}..."
        )
        return {"patched": patched, "warm_stub_requests": after["stub_requests"] - before["stub_requests"]}


# ----------------------------------------------------------------------------------------------- 3
def example_enable_report_and_undo() -> dict[str, Any]:
    """``enable()`` applies perf_config once (cache, metrics, /metrics when ``metrics.serve``, the torch
    thread budget, warmup) and is safe to call from every module that wants it; ``report()`` says what it
    did and what failed open; ``undo()`` reverts it. With ``"enabled": false`` (or ``PERF_ENABLED=0``)
    every wrapper is the original class::

        from infra.integrate import enable     # also: infra.enable
        handle = enable()
        print(handle.report())
    """
    with _sandbox():
        from infra.config import load_config
        from infra.integrate import enable, enable_caching_for_worker

        handle = enable()
        report = handle.report()
        print(report)
        assert enable() is handle  # idempotent
        handle.undo()
        off = load_config(os.environ["PERF_CONFIG"], environ={"PERF_ENABLED": "0"})
        classes = enable_caching_for_worker(off)
        from examples.enrichment.scorer import HybridScorer

        assert classes["HybridScorer"] is HybridScorer  # off means the original, no per-call cost
        return {"report": report, "off_is_original": classes["HybridScorer"] is HybridScorer}


# ----------------------------------------------------------------------------------------------- 4
def example_cache_any_function() -> dict[str, Any]:
    """Cache any function or method by its arguments (sync or async), or a whole class's methods::

        from infra.cache import cached
        @cached(namespace="api", ttl=3600)
        def lookup(city: str) -> dict: ...

        from infra.integrate import cached_class   # also: infra.cached_class
        Scorer = cached_class(Scorer, methods=["score"], namespace="emotion_scoring", ttl=30 * 86400)

    Keys are SHA-256 over the arguments (defaults applied), the function's name and ``version``; a bump
    of ``version`` drops old entries. Exceptions are never cached.
    """
    with _sandbox():
        from infra.cache import cached, get_cache
        from infra.integrate import cached_class

        calls: list[str] = []

        @cached(namespace="api", ttl=3600, version="1")
        def lookup(city: str, *, units: str = "metric") -> dict[str, Any]:
            calls.append(city)
            return {"city": city, "units": units, "temp": len(city) * 3}

        @cached(namespace="api")
        async def alookup(city: str) -> list[str]:
            calls.append("async:" + city)
            return [city.upper()]

        class Scorer:
            def score(self, text: str) -> float:
                calls.append("score:" + text)
                return len(text) / 10

        assert lookup("Seoul") == lookup("Seoul", units="metric") == lookup(city="Seoul")
        assert asyncio.run(alookup("Busan")) == asyncio.run(alookup("Busan")) == ["BUSAN"]
        CachedScorer = cached_class(Scorer, methods=["score"], namespace="emotion_scoring", ttl=30 * 86400)
        assert isinstance(CachedScorer(), Scorer)
        assert CachedScorer().score("hello") == CachedScorer().score("hello") == 0.5
        stats = get_cache().get_stats()
        print(f"computed {calls}; hits {stats['hits']}, misses {stats['misses']}")
        return {"calls": calls, "hits": stats["hits"]}


# ----------------------------------------------------------------------------------------------- 5
def example_http_client() -> dict[str, Any]:
    """Pooled, retrying HTTP with one deadline per call, Retry-After honoured, a retry budget and a circuit
    breaker per host, and per-origin metrics::

        from infra.http import PerfClient, AsyncPerfClient
        with PerfClient.from_config() as client:
            songs = client.get(url, params={"mood": "calm"}).raise_for_status().json()
        async with AsyncPerfClient.from_config() as client:
            r = await client.get(url)
        # or settings built in code (from infra import HttpConfig, RetryConfig): the section, or its keywords
        AsyncPerfClient(HttpConfig(max_per_host=2)); AsyncPerfClient(retry=RetryConfig(attempts=1))
    """
    with _sandbox() as servers:
        from infra.http import AsyncPerfClient, PerfClient

        url = servers.stubs.http_url + "/v1/songs"
        with PerfClient.from_config() as client:
            songs = client.get(url, params={"mood": "calm", "limit": "2"}).raise_for_status().json()

        async def fetch() -> Any:
            async with AsyncPerfClient.from_config() as client:
                r = await client.get(url + "?mood=joy&limit=1")
                return r.raise_for_status().json()

        more = asyncio.run(fetch())
        print(f"songs: {[s['title'] for s in songs]} + {[s['title'] for s in more]}")
        return {"songs": len(songs), "more": len(more)}


# ----------------------------------------------------------------------------------------------- 6
def example_ollama_client() -> dict[str, Any]:
    """``OptimizedOllama``: the official client's methods and return types, plus perf_config's tuning
    (runner options pinned so no call reloads the model, named sampling profiles, keep_alive, a real
    timeout, retries before the first token) and caching of complete responses::

        from infra.ollama import OptimizedOllama
        llm = OptimizedOllama()            # perf_config's "ollama" section; or OptimizedOllama(config.ollama)
        llm = OptimizedOllama(host, settings=OllamaConfig(timeout=30))   # from infra import OllamaConfig
        r = llm.generate(model="llama3.2:3b", prompt=text, profile="stage1")   # num_predict 120, temp 0.3
    """
    with _sandbox() as servers:
        from infra.ollama import OptimizedOllama

        with OptimizedOllama() as llm:
            first = llm.generate(
                model="llama3.2:3b", prompt="I feel grateful for my family", profile="stage1"
            )
            before = servers.work()["ollama_requests"]
            again = llm.generate(
                model="llama3.2:3b", prompt="I feel grateful for my family", profile="stage1"
            )
            hit_requests = servers.work()["ollama_requests"] - before
            vectors = llm.embed(model="nomic-embed-text:latest", input=["calm", "joy", "calm"]).embeddings
        assert again.response == first.response
        print(
            f"stage1: {first.response[:40]!r}...; the repeat asked Ollama {hit_requests} times; "
            f"{len(vectors)} vectors"
        )
        return {"hit_requests": hit_requests, "vectors": len(vectors)}


# ----------------------------------------------------------------------------------------------- 7
def example_metrics_in_fastapi() -> dict[str, Any]:
    """/metrics inside a FastAPI (or Starlette) app: Prometheus text by default, OpenMetrics by Accept,
    JSON with ``?format=json``; and seed 004's JSON route::

        from infra.server import metrics_asgi_app
        app.mount("/metrics", metrics_asgi_app)

        from infra.metrics import get_metrics
        from infra.cache import get_cache

        @app.get("/stats")
        def stats():
            return {"performance": get_metrics().get_stats(), "cache": get_cache().get_stats()}
    """
    with _sandbox():
        import httpx

        from infra.cache import get_cache
        from infra.metrics import get_metrics, timed
        from infra.server import metrics_asgi_app

        try:
            from fastapi import FastAPI

            app: Any = FastAPI()
            framework = "fastapi"

            @app.get("/stats")
            def stats() -> dict[str, Any]:
                return {"performance": get_metrics().get_stats(), "cache": get_cache().get_stats()}

        except ImportError:  # FastAPI is Starlette underneath: the same mount works
            from starlette.applications import Starlette
            from starlette.responses import JSONResponse
            from starlette.routing import Route

            def stats_route(request: Any) -> JSONResponse:
                return JSONResponse(
                    {"performance": get_metrics().get_stats(), "cache": get_cache().get_stats()}
                )

            app = Starlette(routes=[Route("/stats", stats_route)])
            framework = "starlette"
        app.mount("/metrics", metrics_asgi_app)

        with timed("example_request"):
            pass

        async def scrape() -> tuple[str, dict[str, Any]]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                text = (await client.get("/metrics/")).text
                js = (await client.get("/stats")).json()
            return text, js

        text, js = asyncio.run(scrape())
        assert "infra_operation_duration_seconds" in text and "example_request" in js["performance"]
        print(f"{framework}: /metrics {len(text)} bytes of Prometheus text; /stats keys {sorted(js)}")
        return {"framework": framework, "metrics_bytes": len(text), "stats_keys": sorted(js)}


# ----------------------------------------------------------------------------------------------- 8
def example_metrics_in_aiohttp() -> dict[str, Any]:
    """/metrics in an aiohttp app::

    from infra.server import metrics_aiohttp_handler
    app.router.add_get("/metrics", metrics_aiohttp_handler)
    """
    with _sandbox():
        from aiohttp import ClientSession, web

        from infra.server import metrics_aiohttp_handler

        async def run() -> tuple[int, str]:
            app = web.Application()
            app.router.add_get("/metrics", metrics_aiohttp_handler)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            try:
                async with ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as r:
                    return r.status, await r.text()
            finally:
                await runner.cleanup()

        status, text = asyncio.run(run())
        assert status == 200
        print(f"aiohttp /metrics: {status}, {len(text)} bytes")
        return {"status": status, "bytes": len(text)}


# ----------------------------------------------------------------------------------------------- 9
def example_metrics_thread_server() -> dict[str, Any]:
    """/metrics for a worker with no web app: a stdlib server on a daemon thread (127.0.0.1 by default;
    a bearer token from ``metrics.token_env``). ``"metrics": {"serve": true}`` makes ``enable()`` start it::

        from infra.server import serve_metrics
        server = serve_metrics(port=9464)      # port=0: any free port, see server.port
        ...
        server.close()
    """
    with _sandbox():
        import urllib.request

        from infra.server import serve_metrics

        with serve_metrics(port=0) as server:
            with urllib.request.urlopen(server.url + "?format=json", timeout=5) as r:
                body = json.load(r)
            url = server.url
        print(f"served {url}: {len(body)} top-level keys")
        return {"url": url, "keys": len(body)}


# ---------------------------------------------------------------------------------------------- 10
def example_seed_004_stats_snippets() -> dict[str, Any]:
    """Seed 004's monitoring one-liners, verbatim (also the VS Code tasks' ``python -m infra cache stats``
    and ``python -m infra metrics show``)::

        python -c "from infra.cache import get_cache; import json; print(json.dumps(get_cache().get_stats(), indent=2))"
        python -c "from infra.metrics import get_metrics; import json; print(json.dumps(get_metrics().get_stats(), indent=2))"
    """  # noqa: E501 - the seed's lines, verbatim
    with _sandbox():
        import io
        from contextlib import redirect_stdout

        # the seed's lines, verbatim (hence their length)

        out = {}
        for name, line in (
            (
                "cache",
                "from infra.cache import get_cache; import json; print(json.dumps(get_cache().get_stats(), indent=2))",  # noqa: E501
            ),
            (
                "metrics",
                "from infra.metrics import get_metrics; import json; print(json.dumps(get_metrics().get_stats(), indent=2))",  # noqa: E501
            ),
        ):
            buf = io.StringIO()
            with redirect_stdout(buf):
                exec(line, {})
            out[name] = json.loads(buf.getvalue())
        print(f"cache stats keys: {sorted(out['cache'])[:5]}...; metrics operations: {len(out['metrics'])}")
        return out


# ---------------------------------------------------------------------------------------------- 11
def example_hot_path_helpers() -> dict[str, Any]:
    """Seed 000's hot-path patterns as helpers::

    from infra.hotpath import gather_ordered, take_within_budget, AudioFrameTemplate
    neighbours = await gather_ordered(fetch(e) for e in entities)   # concurrent, results in order
    parts = take_within_budget(lines, max_tokens=120)               # in order until the budget is spent
    frame = AudioFrameTemplate({"message_type": "input_audio_chunk", "audio_base_64": None,
                                "commit": False, "sample_rate": 16000}, "audio_base_64")
    await ws.send(frame.encode(chunk))                              # no json.dumps per chunk
    """
    from infra.hotpath import AudioFrameTemplate, gather_ordered, take_within_budget

    async def neighbour(i: int) -> str:
        await asyncio.sleep(0.001 * (5 - i))  # later ones finish first; results still come in order
        return f"  > neighbour of e{i}"

    neighbours = asyncio.run(gather_ordered([neighbour(i) for i in range(5)], limit=5))
    assert neighbours == [f"  > neighbour of e{i}" for i in range(5)]
    parts = take_within_budget(["- Mina (person): sister", *neighbours, "a long community summary " * 20], 40)
    fields = {
        "message_type": "input_audio_chunk",
        "audio_base_64": None,
        "commit": False,
        "sample_rate": 16000,
    }
    frame = AudioFrameTemplate(fields, "audio_base_64")
    chunk = b"\x00\x01" * 512
    import base64

    assert frame.encode(chunk) == json.dumps(
        {**fields, "audio_base_64": base64.b64encode(chunk).decode()}, separators=(",", ":")
    )
    print(
        f"gathered {len(neighbours)} in order; {len(parts)} parts fit the budget; "
        f"frame {len(frame.encode(chunk))} B"
    )
    return {"neighbours": len(neighbours), "parts": len(parts)}


# ------------------------------------------------------------------------------------------ helpers
@contextlib.contextmanager
def _sandbox(scale: float = SCALE) -> Iterator[Any]:
    """Stand-in services on 127.0.0.1, a temporary copy of examples/perf_config.json as $PERF_CONFIG
    (cache in a temp dir), and afterwards: integration undone, cache and config forgotten, env restored."""
    from examples.stubs import ExampleServers
    from infra.cache import reset_cache, set_cache
    from infra.config import reset_config
    from infra.integrate import active_handle

    tmp = Path(tempfile.mkdtemp(prefix="perf-infra-example-"))
    config = json.loads((ROOT / "examples" / "perf_config.json").read_text())
    config.pop("$schema", None)
    config["cache"]["path"] = str(tmp / "cache.db")
    (tmp / "perf_config.json").write_text(json.dumps(config))
    servers = ExampleServers(scale=scale).start()
    previous = servers.apply_env()
    previous["PERF_CONFIG"] = os.environ.get("PERF_CONFIG")
    os.environ["PERF_CONFIG"] = str(tmp / "perf_config.json")
    reset_config()
    prev_cache = set_cache(None)
    try:
        yield servers
    finally:
        handle = active_handle()
        if handle is not None:
            handle.undo()
        reset_cache()
        set_cache(prev_cache)
        reset_config()
        servers.restore_env(previous)
        servers.stop()
        shutil.rmtree(tmp, ignore_errors=True)


EXAMPLES = [
    example_three_line_worker_change,
    example_patch_without_changing_imports,
    example_enable_report_and_undo,
    example_cache_any_function,
    example_http_client,
    example_ollama_client,
    example_metrics_in_fastapi,
    example_metrics_in_aiohttp,
    example_metrics_thread_server,
    example_seed_004_stats_snippets,
    example_hot_path_helpers,
]


def main(argv: list[str] | None = None) -> int:
    """Run every example (or those named on the command line) and say which passed."""
    names = set(argv if argv is not None else sys.argv[1:])
    failed = 0
    for fn in EXAMPLES:
        if names and fn.__name__ not in names:
            continue
        print(f"== {fn.__name__}")
        try:
            fn()
        except Exception as exc:
            failed += 1
            print(f"   FAILED: {type(exc).__name__}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
