"""``metrics.enabled: false`` (or ``PERF_METRICS_ENABLED=0``) keeps every part out of the process registry.

Each test runs one part for real under a config the loader reads (a perf_config.json in tmp_path, or that
file plus the environment override) and reads the process registry's exposition before and after: with
metrics off the part adds no series and no metric family; with metrics on it does, so each test can fail.
The parts' own accounting (``Cache.get_stats()``, ``BatcherStats``, the timer's ``observed``) counts
either way. A series is found by a label value unique to the test (a namespace, a batcher's name, an
origin's port, a statement label, a class name), so other tests' series in the same process don't matter.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.config import get_config, reset_config
from infra.metrics.exposition import render_text

MODES = ("off-by-file", "off-by-env", "on")


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The process config, loaded from tmp_path/config/perf_config.json: metrics off by the file, off by
    ``PERF_METRICS_ENABLED=0`` over a file that leaves them on, or on."""
    name: str = request.param
    for var in ("PERF_CONFIG", "PERF_ENABLED", "PERF_METRICS_ENABLED"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "config").mkdir()
    path = tmp_path / "config" / "perf_config.json"
    metrics = {"enabled": name != "off-by-file", "serve": False}
    path.write_text(json.dumps({"metrics": metrics, "torch": {"enabled": False}}))
    monkeypatch.setenv("PERF_CONFIG", str(path))
    if name == "off-by-env":
        monkeypatch.setenv("PERF_METRICS_ENABLED", "0")
    reset_config()
    assert get_config().metrics.enabled is (name == "on")
    yield name
    reset_config()


def _lines() -> list[str]:
    return render_text().splitlines()


def _families(prefix: str) -> set[str]:
    return {
        line.split()[2]
        for line in _lines()
        if line.startswith("# TYPE ") and line.split()[2].startswith(prefix)
    }


def _samples_with(token: str) -> list[str]:
    return [line for line in _lines() if not line.startswith("#") and token in line]


class _Watch:
    """The registry's families of one part (by name prefix) before, and the series naming ``token`` after."""

    def __init__(self, prefix: str, token: str) -> None:
        self.prefix, self.token = prefix, token
        self.families_before = _families(prefix)
        assert not _samples_with(token)

    def check(self, mode: str) -> None:
        found = _samples_with(self.token)
        new_families = _families(self.prefix) - self.families_before
        if mode == "on":
            assert found, f"no {self.prefix}* series naming {self.token!r} with metrics on"
        else:
            assert not found, f"metrics.enabled is false ({mode}) but the registry gained {found}"
            assert not new_families, (
                f"metrics.enabled is false ({mode}) but families appeared: {new_families}"
            )


def _token(stem: str) -> str:
    return f"{stem}_{uuid.uuid4().hex[:10]}"


# ----------------------------------------------------------------------------------------------- parts
def test_cache(mode: str, tmp_path: Path) -> None:
    from infra.cache import Cache, CacheConfig

    ns = _token("mswitch_cache")
    watch = _Watch("infra_cache_", ns)
    cache = Cache(CacheConfig(path=str(tmp_path / "cache.db")))
    try:
        cache.set(ns, "k", {"v": 1})
        assert cache.get(ns, "k") == {"v": 1}
        cache.get(ns, "absent")
        cache.push_metrics()
        stats: Any = cache.get_stats()
        # the cache's own accounting, whatever the switch says
        assert stats["namespaces"][ns]["hits"] == 1 and stats["namespaces"][ns]["misses"] == 1
        assert stats["fleet"][ns]["hits"] == 1  # and the store's fleet counters (``cache stats``)
        watch.check(mode)
    finally:
        cache.close()


def test_cached_decorator(mode: str, tmp_path: Path) -> None:
    from infra.cache import Cache, CacheConfig, cached

    ns = _token("mswitch_deco")
    watch = _Watch("infra_cache_", ns)
    cache = Cache(CacheConfig(path=str(tmp_path / "cache.db")))
    try:

        @cached(namespace=ns, cache=cache)
        def double(x: int) -> int:
            return 2 * x

        assert [double(2), double(2), double(3)] == [4, 4, 6]
        assert cache.get_stats()["hits"] == 1
        watch.check(mode)
    finally:
        cache.close()


def test_ollama_client(mode: str, tmp_path: Path) -> None:
    from infra.cache import Cache, CacheConfig
    from infra.ollama import OptimizedOllama
    from infra.testing.ollama_server import OllamaTestServer, ServerSettings

    model = "llama3.2:3b"
    with OllamaTestServer(ServerSettings(min_tokens=4, max_tokens=8)) as server:
        before = {line for line in _lines() if line.startswith("infra_ollama_")}
        families = _families("infra_ollama_")
        cache = Cache(CacheConfig(path=str(tmp_path / "cache.db")))
        client = OptimizedOllama(server.url, cache=cache)
        try:
            prompt = _token("Reflect on the sea")
            first = client.generate(model, prompt)
            assert client.generate(model, prompt) == first  # a miss, then a hit
        finally:
            client.close()
            cache.close()
        after = {line for line in _lines() if line.startswith("infra_ollama_")}
        if mode == "on":
            assert after - before, "no infra_ollama_* series recorded with metrics on"
        else:
            assert after == before, (
                f"metrics off ({mode}) but infra_ollama_* series changed: {after ^ before}"
            )
            assert _families("infra_ollama_") == families
        port = server.url.rsplit(":", 1)[1]
        if mode != "on":  # the client's HTTP calls are not recorded either
            assert not _samples_with(f"127.0.0.1:{port}")


def test_http_client(mode: str) -> None:
    from infra.http import PerfClient
    from infra.testing.ollama_server import OllamaTestServer

    with OllamaTestServer() as server:
        origin = server.url.split("://", 1)[1]
        watch = _Watch("infra_http_", origin)
        with PerfClient() as client:
            assert client.get(server.url + "/api/version").status_code == 200
        watch.check(mode)


def test_inference_batcher(mode: str) -> None:
    from infra.inference import MicroBatcher

    name = _token("mswitch_batch")
    watch = _Watch("infra_batch_", name)
    batcher: Any = MicroBatcher(lambda xs: [x * 2 for x in xs], name=name, max_wait_ms=1)
    try:
        assert batcher.submit(21) == 42
    finally:
        batcher.close()
    assert batcher.stats.items == 1  # the batcher's own accounting
    watch.check(mode)


def test_inference_embedder(mode: str, tmp_path: Path) -> None:
    from infra.cache import Cache, CacheConfig
    from infra.inference import CachedEmbedder

    name = _token("mswitch_embed")
    watch = _Watch("infra_", name)
    cache = Cache(CacheConfig(path=str(tmp_path / "cache.db")))
    embedder = CachedEmbedder(
        lambda texts: [[float(len(t))] for t in texts], model_id="m", cache=cache, name=name, namespace=name
    )
    try:
        assert [list(v) for v in embedder.embed(["abc", "de"])] == [[3.0], [2.0]]
        assert [list(v) for v in embedder.embed(["abc"])] == [[3.0]]
        assert embedder.stats.hits == 1  # the embedder's own accounting
    finally:
        embedder.close()
        cache.close()
    watch.check(mode)


def test_db_statement_timing(mode: str, postgres_dsn: str) -> None:
    from infra.db import create_pool
    from infra.db.timing import statement_label

    sql = f"SELECT 1 AS {_token('mswitch')}"
    label = statement_label(sql)
    watch = _Watch("infra_db_", label)

    async def run() -> None:
        pool = await create_pool(postgres_dsn, min_size=1, max_size=1)
        try:
            assert await pool.fetchval(sql) == 1
        finally:
            await pool.close()

    asyncio.run(run())
    watch.check(mode)


@pytest.mark.parametrize("timing", [None, True], ids=["timing-default", "timing-true"])
def test_integrate_method_timing(mode: str, tmp_path: Path, timing: bool | None) -> None:
    """``timing=True`` asks for the method's series; the operator's ``metrics.enabled: false`` still wins
    (it added ``infra_operation_duration_seconds{operation="S.score"}`` with metrics off)."""
    from infra.cache import Cache, CacheConfig
    from infra.integrate import cached_class

    cls_name = "MSwitch" + uuid.uuid4().hex[:10]
    scorer = type(cls_name, (), {"score": lambda self, text: len(text), "__module__": __name__})
    watch = _Watch("infra_operation_", f"{cls_name}.score")
    cache = Cache(CacheConfig(path=str(tmp_path / "cache.db")))
    try:
        wrapped: Any = cached_class(scorer, ["score"], cache=cache, key_attrs=[], timing=timing)
        assert wrapped().score("abc") == 3
    finally:
        cache.close()
    watch.check(mode)


class _Socket:
    """A connection the sender writes to (what it needs of ``websockets``' ClientConnection)."""

    def __init__(self) -> None:
        self.got: list[str | bytes] = []

    async def send(self, message: str | bytes, /, *, text: bool | None = None) -> None:
        self.got.append(message)

    async def close(self) -> None:
        pass


def test_audio_stream_sender(mode: str) -> None:
    from infra.hotpath import AudioStreamSender

    name = _token("mswitch_ws")
    watch = _Watch("infra_ws_", name)
    socket = _Socket()

    async def connect() -> _Socket:
        return socket

    async def run() -> None:
        async with AudioStreamSender(connect=connect, name=name) as sender:
            assert await sender.send("hello")
        assert sender.sent == 1  # the sender's own counter

    asyncio.run(run())
    assert socket.got == ["hello"]
    watch.check(mode)


def test_integrate_failure_counter(mode: str) -> None:
    from infra.integrate._failures import failure_counts, record_failure

    part = _token("mswitch_part")
    watch = _Watch("infra_integrate_", part)
    record_failure(part, "a test failure")
    assert failure_counts()[part] == 1  # the layer's own count, read by enable().report()
    watch.check(mode)
