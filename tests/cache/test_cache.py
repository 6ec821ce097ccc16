"""The Cache API: get/set/delete, TTL, L1, invalidation across instances, async twins, stats, off is off."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from infra.cache import MISSING, Cache, NamespaceConfig, make_key
from infra.cache.backends.base import StoredEntry
from infra.metrics import get_metrics
from tests.cache.conftest import PYTHON, subprocess_env

MakeCache = Callable[..., Cache]


def test_get_set_delete_round_trip(cache: Cache) -> None:
    k = make_key("inference", "prompt")
    assert cache.get("inference", k) is MISSING
    assert cache.get("inference", k, default=None) is None
    cache.set("inference", k, {"text": "hi", "tokens": (1, 2)})
    assert cache.get("inference", k) == {"text": "hi", "tokens": (1, 2)}
    cache.set("inference", k, None)  # None is a value, not a miss
    assert cache.get("inference", k, default="d") is None
    assert cache.delete("inference", k)
    assert cache.get("inference", k) is MISSING


def test_values_persist_across_instances(make_cache: MakeCache) -> None:
    a = make_cache()
    a.set("api", "k", [1.5, "x", b"raw"])
    b = make_cache()
    assert b.get("api", "k") == [1.5, "x", b"raw"]


def test_ttl_expiry_in_l1_and_l2(make_cache: MakeCache) -> None:
    a = make_cache(ttl_jitter=0)
    a.set("ns", "short", "v", ttl=0.05)
    a.set("ns", "long", "v", ttl=60)
    a.set("ns", "forever", "v", ttl=0)
    assert a.get("ns", "short") == "v"
    time.sleep(0.08)
    assert a.get("ns", "short") is MISSING  # L1 honours expiry
    assert make_cache().get("ns", "short") is MISSING  # and so does the store
    assert a.get("ns", "long") == "v" and a.get("ns", "forever") == "v"


def test_namespace_ttl_and_jitter(make_cache: MakeCache) -> None:
    c = make_cache(namespaces={"search": NamespaceConfig(ttl=100)}, ttl_jitter=0.5)
    now = time.time()
    for i in range(20):
        c.set("search", f"k{i}", i)
    assert c.backend is not None
    exps = [c.backend.get("search", f"k{i}").expires_at for i in range(20)]  # type: ignore[union-attr]
    assert all(now + 100 <= e <= now + 151 for e in exps)  # type: ignore[operator]
    assert len({round(e, 3) for e in exps}) > 1  # type: ignore[arg-type]


def test_l1_is_bounded_by_items_and_bytes(make_cache: MakeCache) -> None:
    c = make_cache(memory_items=10, memory_bytes=10_000)
    for i in range(50):
        c.set("ns", f"k{i}", "x" * 100)
    assert c.get_stats()["l1"]["entries"] == 10
    for i in range(5):
        c.set("ns", f"big{i}", "y" * 4000)
    assert c.get_stats()["l1"]["bytes"] <= 10_000
    assert all(c.get("ns", f"k{i}") == "x" * 100 for i in range(50))  # evicted from L1, served by L2


def test_invalidate_namespace_drops_only_that_namespace(cache: Cache) -> None:
    cache.set("a", "k", 1)
    cache.set("b", "k", 2)
    cache.invalidate("a")
    assert cache.get("a", "k") is MISSING
    assert cache.get("b", "k") == 2
    cache.set("a", "k", 3)
    assert cache.get("a", "k") == 3


def test_invalidation_is_seen_by_other_instances_within_the_poll_interval(make_cache: MakeCache) -> None:
    a, b = make_cache(), make_cache()
    a.set("ns", "k", "old")
    assert b.get("ns", "k") == "old"  # now in b's L1
    a.invalidate("ns")
    time.sleep(0.15)
    assert b.get("ns", "k") is MISSING


def test_invalidation_from_another_process(make_cache: MakeCache, cache_path: str) -> None:
    c = make_cache()
    c.set("ns", "k", "old")
    assert c.get("ns", "k") == "old"
    script = (
        "import sys\nfrom infra.cache import Cache, CacheConfig\n"
        "c = Cache(CacheConfig(path=sys.argv[1])); c.invalidate('ns'); c.close()\n"
    )
    subprocess.run([PYTHON, "-c", script, cache_path], env=subprocess_env(), check=True, timeout=60)
    time.sleep(0.15)
    assert c.get("ns", "k") is MISSING


def test_get_many_set_many(cache: Cache) -> None:
    cache.set_many("ns", {f"k{i}": i for i in range(20)})
    assert cache.get_many("ns", [f"k{i}" for i in range(0, 30, 3)]) == {f"k{i}": i for i in range(0, 20, 3)}


def test_get_or_compute_caches_results_and_exceptions_are_not_cached(cache: Cache) -> None:
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        return "value"

    assert cache.get_or_compute("ns", "k", compute) == "value"
    assert cache.get_or_compute("ns", "k", compute) == "value"
    assert len(calls) == 1

    def boom() -> str:
        raise ValueError("nope")

    for _ in range(2):
        with pytest.raises(ValueError, match="nope"):
            cache.get_or_compute("ns", "err", boom)
    assert cache.get("ns", "err") is MISSING


def test_unstorable_result_is_returned_and_counted(cache: Cache) -> None:
    class Opaque:
        pass

    obj = Opaque()
    assert cache.get_or_compute("ns", "k", lambda: obj) is obj
    s = cache.namespace_stats("ns")
    assert s["uncacheable"] == 1 and s["errors_by_reason"] == {"encode": 1}


def test_undecodable_row_is_a_counted_miss(cache: Cache) -> None:
    assert cache.backend is not None
    cache.backend.set("ns", "k", StoredEntry(b"\xff\xfe\xfd", 1))  # STR codec, invalid UTF-8
    assert cache.get("ns", "k") is MISSING
    assert cache.namespace_stats("ns")["errors_by_reason"] == {"decode": 1}
    assert cache.get_or_compute("ns", "k", lambda: "fresh") == "fresh"


def test_signed_pickle_namespace_round_trips_and_rejects_tampering(
    make_cache: MakeCache, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("PERF_CACHE_SIGNING_KEY", "test-signing-key")
    c = make_cache(namespaces={"objs": NamespaceConfig(codec="pickle")})

    class_value = ValueError("an exception object: pickle only")
    c.set("objs", "k", class_value)
    fresh = make_cache(namespaces={"objs": NamespaceConfig(codec="pickle")})
    out = fresh.get("objs", "k")
    assert type(out) is ValueError and out.args == class_value.args
    # an attacker with write access to the file but not the key
    import pickle

    from infra.cache import codecs

    marker = tmp_path / "ran"
    evil = pickle.dumps(_Evil(str(marker)))
    assert c.backend is not None
    c.backend.set("objs", "k2", StoredEntry(b"\x00" * 32 + evil, codecs.PICKLE | codecs.FLAG_SIGNED))
    c.backend.set("objs", "k3", StoredEntry(evil, codecs.PICKLE))
    assert fresh.get("objs", "k2") is MISSING and fresh.get("objs", "k3") is MISSING
    assert not marker.exists()
    assert fresh.namespace_stats("objs")["errors_by_reason"]["decode"] == 2


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_disabled_cache_is_a_pure_pass_through(make_cache: MakeCache, cache_path: str) -> None:
    import os

    c = make_cache(enabled=False)
    c.set("ns", "k", 1)
    assert c.get("ns", "k") is MISSING and c.get("ns", "k", 5) == 5
    calls: list[int] = []
    assert c.get_or_compute("ns", "k", lambda: calls.append(1) or 7) == 7
    assert c.get_or_compute("ns", "k", lambda: calls.append(1) or 7) == 7
    assert len(calls) == 2
    assert asyncio.run(c.aget_or_compute("ns", "k", lambda: 8)) == 8
    assert c.backend is None and not os.path.exists(cache_path)  # no I/O at all
    assert c.get_stats()["enabled"] is False


def test_perf_enabled_0_disables_the_process_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from infra.cache import get_cache, reset_cache, set_cache
    from infra.config import reset_config

    monkeypatch.setenv("PERF_ENABLED", "0")
    monkeypatch.chdir(tmp_path)
    prev = set_cache(None)
    reset_config()
    try:
        c = get_cache()
        assert not c.enabled
        assert c.get_or_compute("ns", "k", lambda: 3) == 3
    finally:
        reset_cache()
        set_cache(prev)
        reset_config()  # get_cache() loaded the process config with PERF_ENABLED=0: later tests reread it


def test_memory_backend_is_l1_only(make_cache: MakeCache, cache_path: str) -> None:
    import os

    c = make_cache(backend="memory")
    c.set("ns", "k", 1)
    assert c.get("ns", "k") == 1 and c.backend is None and not os.path.exists(cache_path)
    c.invalidate("ns")
    assert c.get("ns", "k") is MISSING


async def test_async_twins(cache: Cache) -> None:
    await cache.aset("ns", "k", {"a": 1})
    assert await cache.aget("ns", "k") == {"a": 1}
    await cache.aset_many("ns", {"x": 1, "y": 2})
    assert await cache.aget_many("ns", ["x", "y", "z"]) == {"x": 1, "y": 2}
    assert await cache.adelete("ns", "x")
    assert await cache.aget("ns", "x") is MISSING

    async def compute() -> str:
        await asyncio.sleep(0)
        return "computed"

    assert await cache.aget_or_compute("ns", "c", compute) == "computed"
    assert await cache.aget_or_compute("ns", "c", lambda: "sync compute not called") == "computed"
    assert await cache.aget_or_compute("ns", "s", lambda: "sync compute") == "sync compute"
    await cache.ainvalidate("ns")
    assert await cache.aget("ns", "c") is MISSING


def test_hit_counts_and_saved_time_are_exact_with_readers_folding_concurrently(make_cache: MakeCache) -> None:
    """Hits are appended on the hot path and folded into the totals by readers and the tick: with four
    threads hitting (L1 and L2 caches) while another reads the stats in a loop, nothing is lost or doubled."""
    import threading

    for memory_items in (10_000, 0):
        c = make_cache(memory_items=memory_items)
        c.set("inference", "a", "x", cost=0.25)
        stop = threading.Event()
        seen: list[int] = []

        def reader(c: Cache = c, stop: threading.Event = stop, seen: list[int] = seen) -> None:
            while not stop.is_set():
                seen.append(c.get_stats()["namespaces"]["inference"]["hits"])

        def hitter(c: Cache = c) -> None:
            for _ in range(5000):
                assert c.get("inference", "a") == "x"

        r = threading.Thread(target=reader)
        r.start()
        hitters = [threading.Thread(target=hitter) for _ in range(4)]
        for t in hitters:
            t.start()
        for t in hitters:
            t.join()
        stop.set()
        r.join()
        inf = c.get_stats()["namespaces"]["inference"]
        assert inf["hits"] == 20_000
        assert inf["compute_seconds_saved"] == pytest.approx(20_000 * 0.25)
        assert seen == sorted(seen)  # never went backwards while folding
        assert len(c.namespace_counters()["inference"].hit_costs) == 0  # folded by the read


def test_stats_shape_and_metrics_names(make_cache: MakeCache) -> None:
    c = make_cache()
    c.set("inference", "a", "x" * 10)
    for _ in range(3):
        c.get("inference", "a")
    c.get("inference", "missing")
    c.get_or_compute("embeddings", "e", lambda: time.sleep(0.01) or [0.5] * 8)
    c.get_or_compute("embeddings", "e", lambda: [0.0])
    s = c.get_stats()
    for field in (
        "enabled",
        "total_entries",
        "total_bytes",
        "by_type",
        "hits",
        "misses",
        "hit_rate",
        "errors",
    ):
        assert field in s
    assert s["by_type"] == {"embeddings": 1, "inference": 1}
    inf = s["namespaces"]["inference"]
    assert (inf["hits"], inf["misses"], inf["hit_rate"]) == (3, 1, 0.75)
    assert s["namespaces"]["embeddings"]["compute_seconds_saved"] >= 0.01
    assert s["total_bytes"] == 10 + 64
    import json

    json.dumps(s)  # JSON-ready
    reg = get_metrics()
    hits = reg.counter("infra_cache_hits_total", labelnames=("namespace",)).labels(namespace="inference")
    misses = reg.counter("infra_cache_misses_total", labelnames=("namespace",)).labels(namespace="inference")
    assert _value(hits) >= 3 and _value(misses) >= 1


def test_evictions_are_exported_by_tier(make_cache: MakeCache) -> None:
    c = make_cache(memory_items=2)
    for i in range(5):
        c.set("ns", f"k{i}", i)
    s = c.get_stats()
    assert s["l1"]["evictions"] == 3
    fam = get_metrics().counter("infra_cache_evictions_total", labelnames=("tier",))
    assert _value(fam.labels(tier="l1")) >= 3


def _value(child: Any) -> float:
    for attr in ("value", "_value", "get"):
        v = getattr(child, attr, None)
        if v is not None:
            return float(v() if callable(v) else v)
    raise AssertionError("metric child exposes no value")


def test_backend_failure_on_every_call_fails_open(make_cache: MakeCache) -> None:
    from infra.cache.backends.base import CacheBackend
    from infra.errors import CacheError

    class Broken(CacheBackend):
        name = "broken"

        def _fail(self, *a: Any, **k: Any) -> Any:
            raise CacheError("store is down")

        get = set = delete = invalidate = purge = clear = acquire_lease = release_lease = stats = _fail  # type: ignore[assignment]

        def generations(self) -> dict[str, int]:
            raise CacheError("store is down")

        def close(self) -> None:
            pass

    c = make_cache(backend_obj=Broken())
    calls: list[int] = []
    for _ in range(3):
        assert c.get_or_compute("ns", "k", lambda: calls.append(1) or "real") == "real"
    assert len(calls) == 1  # the L1 still works
    c.set("ns", "k2", 2)
    c.invalidate("ns")
    assert c.get("ns", "k2") is MISSING
    assert c.namespace_stats("ns")["errors"] >= 3
    assert c.get_stats()["backend_error"] == "store is down"


def test_connections_are_reopened_after_fork(make_cache: MakeCache) -> None:
    import os

    c = make_cache()
    c.set("ns", "parent", "p")
    assert c.get("ns", "parent") == "p"
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's SQLite connection
        code = 1
        try:
            c.l1.clear()
            ok = c.get("ns", "parent") == "p"
            c.set("ns", "child", "c")
            code = 0 if ok and c.namespace_stats("ns")["errors"] == 0 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert c.get("ns", "child") == "c"
