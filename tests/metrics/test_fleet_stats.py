"""Fleet-wide cache counters kept in the store: every process adds its deltas, any process reads totals."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.cache import MISSING, Cache, CacheConfig
from infra.cache.backends.sqlite.store import SQLiteBackend
from infra.cache.fleet_stats import PUSH_INTERVAL, FleetCounts


def _sqlite(tmp_path: Path) -> Callable[[], Any]:
    return lambda: SQLiteBackend(str(tmp_path / "fleet.db"))


def _postgres(dsn: str, table: str) -> Callable[[], Any]:
    from infra.cache.backends.postgres import PostgresBackend

    return lambda: PostgresBackend(dsn=dsn, table=table, budget=1.0)  # a loaded box: not the 50 ms default


def _redis(url: str, prefix: str) -> Callable[[], Any]:
    from infra.cache.backends.redis import RedisBackend

    return lambda: RedisBackend(url=url, prefix=prefix, budget=1.0)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def make_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    tag = "fleet" + uuid.uuid4().hex[:8]
    if request.param == "sqlite":
        return _sqlite(tmp_path)
    if request.param == "postgres":
        return _postgres(request.getfixturevalue("postgres_dsn"), tag)
    return _redis(request.getfixturevalue("redis_url"), tag)


def _work(cache: Cache, ns: str, hits: int, misses: int) -> None:
    for i in range(misses):
        assert cache.get(ns, f"miss{i}-{uuid.uuid4().hex}") is MISSING
    cache.set(ns, "k", "v", cost=0.5)
    for _ in range(hits):
        assert cache.get(ns, "k") == "v"


def test_two_caches_on_one_store_add_up_and_reset_zeroes(make_backend: Callable[[], Any]) -> None:
    ns = "n" + uuid.uuid4().hex[:8]
    key = b"fleet-test-key-0123456789abcdef"  # shared stores need one
    a = Cache(CacheConfig(), signing_key=key, backend=make_backend())
    b = Cache(CacheConfig(), signing_key=key, backend=make_backend())
    _work(a, ns, 7, 3)
    _work(b, ns, 5, 2)
    a.close()
    b.close()
    reader = make_backend()
    try:
        assert reader.fleet_read()[ns] == FleetCounts(12, 5, 0, pytest.approx(6.0))
        reader.fleet_reset(None)
        assert reader.fleet_read().get(ns, FleetCounts()) == FleetCounts()
    finally:
        reader.close()


def test_a_busy_process_writes_one_push_a_tick_not_one_per_hit(tmp_path: Path) -> None:
    pushes: list[int] = []

    class Counting(SQLiteBackend):
        def fleet_add(self, deltas: Any) -> None:
            pushes.append(sum(d.hits for d in deltas.values()))
            super().fleet_add(deltas)

    ns = "busy"
    cache = Cache(CacheConfig(), backend=Counting(str(tmp_path / "b.db")))
    t0 = time.monotonic()
    _work(cache, ns, 20_000, 1)
    elapsed = time.monotonic() - t0
    cache.close()
    assert sum(pushes) == 20_000
    assert len(pushes) <= elapsed / PUSH_INTERVAL + 2  # the pusher's tick, plus the one close() makes


def test_a_live_idle_process_has_pushed_within_a_tick(tmp_path: Path) -> None:
    ns = "idle"
    cache = Cache(CacheConfig(), backend=SQLiteBackend(str(tmp_path / "i.db")))
    reader = SQLiteBackend(str(tmp_path / "i.db"))
    try:
        _work(cache, ns, 9, 1)
        deadline = time.monotonic() + 30  # a loaded box; the pusher ticks every PUSH_INTERVAL
        while reader.fleet_read().get(ns, FleetCounts()).hits != 9 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reader.fleet_read()[ns].hits == 9
    finally:
        reader.close()
        cache.close()


def test_get_stats_shows_this_process_and_every_process(tmp_path: Path) -> None:
    """get_cache().get_stats(): hits/misses are this process's; "fleet" holds every process's."""
    ns = "both"
    other = Cache(CacheConfig(path=str(tmp_path / "f.db")))
    _work(other, ns, 4, 1)
    other.close()
    mine = Cache(CacheConfig(path=str(tmp_path / "f.db")))
    try:
        for _ in range(3):
            assert mine.get(ns, "k") == "v"
        st = mine.get_stats()
        assert (st["namespaces"][ns]["hits"], st["namespaces"][ns]["misses"]) == (3, 0)
        assert (st["fleet"][ns]["hits"], st["fleet"][ns]["misses"]) == (7, 1)
        assert st["fleet"][ns]["hit_rate"] == 0.875
    finally:
        mine.close()
