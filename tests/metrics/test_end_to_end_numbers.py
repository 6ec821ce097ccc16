"""Issue 16, end to end: drive every cached path, count the real calls here, and compare every view.

Paths: ``@cached`` sync and async functions, a cached method, ``get_or_compute``, HTTP response caching
(a real server on 127.0.0.1 counts the requests it served), ``warm``. For each namespace the truth is
``misses == real calls`` and ``hits == calls - real calls``. Views compared: ``get_cache().get_stats()``,
``get_metrics().get_stats()``, a live /metrics endpoint in text, OpenMetrics and JSON; immediately, after an
idle second, and from second processes through the CLI (``cache stats --json`` reads the store's fleet
counters, ``metrics show --json`` the endpoint).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.cache import Cache, CacheConfig, cached, make_key, set_cache
from infra.metrics import get_metrics
from infra.server import serve_metrics
from infra.testing.fault_server import FaultServer

REPO = Path(__file__).resolve().parents[2]
PARTS = ("fn", "async", "method", "goc", "http", "warm")


def _cli(*argv: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERF_")}
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run(
        [sys.executable, "-m", "infra", *argv], capture_output=True, text=True, env=env, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def _scrape(url: str, accept: str) -> str:
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()  # type: ignore[no-any-return]


def _sample(text: str, name: str, ns: str) -> float:
    prefix = f'{name}{{namespace="{ns}"}} '
    found = [float(ln[len(prefix) :]) for ln in text.splitlines() if ln.startswith(prefix)]
    return found[0] if found else 0.0


class World:
    """Everything the test drives, and what it counted."""

    def __init__(self, tmp_path: Path, parts: tuple[str, ...] = PARTS) -> None:
        tag = uuid.uuid4().hex[:8]
        self.ns = {p: f"e2e_{p}_{tag}" for p in parts}
        self.calls: dict[str, int] = dict.fromkeys(self.ns, 0)  # every call made through the layer
        self.real: dict[str, int] = dict.fromkeys(self.ns, 0)  # calls that really ran
        self.config = tmp_path / "perf_config.json"
        self.config.write_text(json.dumps({"cache": {"path": str(tmp_path / "cache.db")}}))
        self.cache = Cache(CacheConfig(path=str(tmp_path / "cache.db")))
        self.saved_at_least: dict[str, float] = {}  # compute seconds the hits must have saved, per part

    def truth(self, part: str) -> tuple[int, int]:
        """(hits, misses) that must show for ``part``'s namespace."""
        return self.calls[part] - self.real[part], self.real[part]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    previous = set_cache(w.cache)
    try:
        yield w
    finally:
        set_cache(previous)
        w.cache.close()


def _drive(w: World, http_url: str, http_hits: Any) -> None:
    @cached(namespace=w.ns["fn"])
    def double(x: int) -> int:
        w.real["fn"] += 1
        return 2 * x

    for i in range(20):
        assert double(i % 5) == 2 * (i % 5)
        w.calls["fn"] += 1

    @cached(namespace=w.ns["async"])
    async def square(x: int) -> int:
        w.real["async"] += 1
        await asyncio.sleep(0)
        return x * x

    async def run_async() -> None:
        for i in range(12):
            assert await square(i % 3) == (i % 3) ** 2
            w.calls["async"] += 1

    asyncio.run(run_async())

    class Service:
        @cached(namespace=w.ns["method"])
        def describe(self, item: str) -> str:
            w.real["method"] += 1
            return item.upper()

    svc = Service()
    for i in range(10):
        assert svc.describe(f"i{i % 2}") == f"I{i % 2}"
        w.calls["method"] += 1

    def compute(k: str) -> str:
        w.real["goc"] += 1
        return k * 2

    for i in range(9):
        assert (
            w.cache.get_or_compute(w.ns["goc"], f"g{i % 3}", lambda i=i: compute(f"g{i % 3}"))
            == f"g{i % 3}" * 2
        )
        w.calls["goc"] += 1

    from infra.http import HttpCacheConfig, PerfClient

    with PerfClient(cache=HttpCacheConfig(enabled=True, namespace=w.ns["http"]), cache_store=w.cache) as http:
        for i in range(8):
            assert http.get(f"{http_url}/echo/{w.ns['http']}-{i % 2}").status == 200
            w.calls["http"] += 1
    w.real["http"] = sum(http_hits[f"echo/{w.ns['http']}-{j}"] for j in range(2))

    from infra.hotpath.warm import warm_cache

    items = ["alpha", "beta", "gamma", "delta"]

    def synth(text: str) -> str:
        w.real["warm"] += 1
        time.sleep(0.01)  # a cost worth saving: compute_seconds_saved must show it
        return text[::-1]

    warm_cache(items, synth, namespace=w.ns["warm"], cache=w.cache, background=False)
    w.saved_at_least["warm"] = 12 * 0.01 * 0.9  # 12 hits of entries that each took >= 10 ms
    w.calls["warm"] += len(items)  # warm's own lookups: one miss per item it had to compute
    for _ in range(3):
        for item in items:
            assert w.cache.get(w.ns["warm"], make_key(w.ns["warm"], item)) == item[::-1]
            w.calls["warm"] += 1


def _check_in_process(w: World, metrics_url: str) -> None:
    cache_view = w.cache.get_stats()["namespaces"]
    metrics_view = get_metrics().get_stats()["cache"]
    text = _scrape(metrics_url, "text/plain")
    om = _scrape(metrics_url, "application/openmetrics-text; version=1.0.0")
    doc = json.loads(_scrape(metrics_url, "application/json"))
    for part, ns in w.ns.items():
        hits, misses = w.truth(part)
        assert (cache_view[ns]["hits"], cache_view[ns]["misses"]) == (hits, misses), part
        assert (metrics_view[ns]["hits"], metrics_view[ns]["misses"]) == (hits, misses), part
        assert metrics_view[ns]["hit_rate"] == cache_view[ns]["hit_rate"] == round(hits / (hits + misses), 6)
        for rendered in (text, om):
            assert _sample(rendered, "infra_cache_hits_total", ns) == hits, part
            assert _sample(rendered, "infra_cache_misses_total", ns) == misses, part
        assert (doc["stats"]["cache"][ns]["hits"], doc["stats"]["cache"][ns]["misses"]) == (hits, misses)
        assert _sample(text, "infra_cache_entries", ns) == cache_view[ns]["entries"] > 0
    for part, minimum in w.saved_at_least.items():
        saved = metrics_view[w.ns[part]]["compute_seconds_saved"]
        assert saved >= minimum, part
        assert saved == pytest.approx(cache_view[w.ns[part]]["compute_seconds_saved"]), part


def test_every_view_equals_the_calls_counted_here(world: World) -> None:
    srv = serve_metrics(port=0)
    try:
        with FaultServer() as http_server:
            _drive(world, http_server.url, http_server.hits)
        assert all(world.real[p] > 0 and world.calls[p] > world.real[p] for p in world.ns)
        _check_in_process(world, srv.url)  # immediately
        time.sleep(1.0)  # an idle second: nothing may go stale or missing
        _check_in_process(world, srv.url)
        _check_cli(world, srv.url)
    finally:
        srv.close()


def _check_cli(w: World, metrics_url: str) -> None:
    shown = _cli("metrics", "show", "--json", "--url", metrics_url)["cache"]
    for part, ns in w.ns.items():
        assert (shown[ns]["hits"], shown[ns]["misses"]) == w.truth(part), part
    # `cache stats` in another process reads the store's fleet counters (pushed twice a second);
    # polled with a 10x margin for a loaded box.
    want = {p: w.truth(p) for p in w.ns}
    deadline = time.monotonic() + 10
    while True:
        rows = _cli("cache", "stats", "--json", "--config", str(w.config))["namespaces"]
        got = {p: (rows.get(ns, {}).get("hits"), rows.get(ns, {}).get("misses")) for p, ns in w.ns.items()}
        if got == want or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got == want
    for part in w.saved_at_least:
        assert rows[w.ns[part]]["compute_seconds_saved"] > 0, part


def test_ollama_generate_chat_embed_with_write_behind_count_in_every_view(tmp_path: Path) -> None:
    """Ollama calls with the shipped write-behind on: hits answered from the write-behind queue count as
    hits (and save the generation's compute time) in every view."""
    if not hasattr(Cache, "record_hit"):
        pytest.xfail(
            "counting Ollama hits answered from the write-behind queue (Cache.record_hit) is helper "
            "ollama15's part of issue 16 (infra/ollama) and has not landed on this branch"
        )
    from infra.ollama import OllamaCacheConfig, OllamaConfig, OptimizedOllama
    from infra.testing.ollama_server import OllamaTestServer, ServerSettings

    w = World(tmp_path, ("ollama", "ollama_embed"))
    rows = {"generate": "ollama generate llama3.2:3b", "chat": "ollama chat llama3.2:3b"}
    rows["embed"] = "ollama embed nomic-embed-text:latest"
    before = {op: get_metrics().get_stats().get(row, {}).get("count", 0) for op, row in rows.items()}
    srv = serve_metrics(port=0)
    try:
        with OllamaTestServer(ServerSettings(min_tokens=8, max_tokens=24)) as ollama_server:
            settings = OllamaConfig(
                cache=OllamaCacheConfig(namespace=w.ns["ollama"], embed_namespace=w.ns["ollama_embed"]),
                write_behind=True,
                timeout=10.0,
                retry_backoff=0.01,
            )
            llm = OptimizedOllama(ollama_server.url, settings=settings, cache=w.cache)
            for i in range(12):
                llm.generate("llama3.2:3b", f"prompt {i % 3}")
                w.calls["ollama"] += 1
            for i in range(6):
                llm.chat("llama3.2:3b", [{"role": "user", "content": f"hi {i % 2}"}])
                w.calls["ollama"] += 1
            for i in range(8):
                llm.embed("nomic-embed-text:latest", f"text {i % 4}")
                w.calls["ollama_embed"] += 1
            assert llm.flush(10)
            llm.close()
            served = ollama_server.stats()["requests"]
        w.real["ollama"] = int(served.get("generate", 0)) + int(served.get("chat", 0))
        w.real["ollama_embed"] = int(served.get("embed", 0))
        assert w.real == {"ollama": 5, "ollama_embed": 4}
        w.saved_at_least["ollama"] = 1e-6
        # every call is an operation row of get_stats() (per model and operation), with its latencies
        stats = get_metrics().get_stats()
        for op, n in (("generate", 12), ("chat", 6), ("embed", 8)):
            assert stats[rows[op]]["count"] - before[op] == n, op
            assert stats[rows[op]]["p99_ms"] >= stats[rows[op]]["p50_ms"] > 0, op
        _check_in_process(w, srv.url)
        time.sleep(1.0)
        _check_in_process(w, srv.url)
        _check_cli(w, srv.url)
    finally:
        srv.close()
        w.cache.close()
