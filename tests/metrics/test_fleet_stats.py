"""Fleet-wide cache counters kept in the store: every process adds its deltas, any process reads totals."""

from __future__ import annotations

import signal
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


def test_uncacheable_calls_add_up_in_every_store(make_backend: Callable[[], Any]) -> None:
    ns = "u" + uuid.uuid4().hex[:8]
    store = make_backend()
    try:
        store.fleet_add({ns: FleetCounts(uncacheable=3)})
        store.fleet_add({ns: FleetCounts(hits=1, uncacheable=2)})
        assert store.fleet_read()[ns] == FleetCounts(hits=1, uncacheable=5)
        store.fleet_reset(ns)
        assert ns not in store.fleet_read()
    finally:
        store.close()


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


# A worker stopped by SIGTERM (docker stop, systemd, Kubernetes) keeps its counts. The push thread ticks once
# an hour here, so only the SIGTERM handler can push what the worker counted after its first push.
SIGTERM_WORKER = """
import os, signal, sys, threading
from infra.cache import Cache, CacheConfig, cached
from infra.cache import fleet_stats
fleet_stats.PUSH_INTERVAL = 3600.0
path, ns, mode = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "own-handler":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))  # the user's: sys.exit runs atexit
cache = Cache(CacheConfig(path=path))
cache.set(ns, "k", "v", cost=0.5)
for _ in range(50):
    assert cache.get(ns, "k") == "v"
fleet_stats.push_now(cache)  # the first 50: pushed, as the thread would have during the 2 s pause
for _ in range(30):
    assert cache.get(ns, "k") == "v"

@cached(namespace=ns + "-u", cache=cache)
def f(x):
    return 1

for _ in range(3):
    f(iter([1]))  # a list_iterator: no canonical key, runs uncached, counted
print("counted", flush=True)
sys.stdin.readline()  # the parent has read the store: now die
if mode == "holding-lock":  # the signal lands while this thread holds the push lock
    fleet_stats._PUSHER.lock.acquire()
os.kill(os.getpid(), signal.SIGTERM)
threading.Event().wait(60)  # never reached: the signal ends the process
"""


def _sigterm_worker(
    tmp_path: Path, mode: str, **env: str
) -> tuple[int, FleetCounts, FleetCounts, FleetCounts]:
    """Run the worker; its exit code, what the store held when the worker was ready, and then after."""
    import os
    import subprocess
    import sys

    path, ns = str(tmp_path / "term.db"), "t" + uuid.uuid4().hex[:8]
    repo = Path(__file__).resolve().parents[2]
    child_env = {**os.environ, "PYTHONPATH": str(repo), **env}
    with subprocess.Popen(
        [sys.executable, "-c", SIGTERM_WORKER, path, ns, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env,
    ) as child:
        assert child.stdout is not None and child.stdin is not None
        try:
            assert child.stdout.readline() == "counted\n"
            before = _read(path).get(ns, FleetCounts())
            child.stdin.write("go\n")
            child.stdin.flush()
            rc = child.wait(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
    after = _read(path)
    return rc, before, after.get(ns, FleetCounts()), after.get(ns + "-u", FleetCounts())


def _read(path: str) -> dict[str, FleetCounts]:
    reader = SQLiteBackend(path)
    try:
        return reader.fleet_read()
    finally:
        reader.close()


def test_a_worker_stopped_by_sigterm_keeps_every_count_and_still_dies_by_the_signal(tmp_path: Path) -> None:
    rc, before, after, uncacheable = _sigterm_worker(tmp_path, "default")
    assert before.hits == 50  # the last 30 hits and the uncacheable calls were not in the store yet
    assert rc == -signal.SIGTERM
    assert (after.hits, after.misses) == (80, 0)
    assert uncacheable.uncacheable == 3


def test_the_sigterm_push_can_be_turned_off(tmp_path: Path) -> None:
    rc, _, after, _ = _sigterm_worker(tmp_path, "default", INFRA_CACHE_SIGTERM_PUSH="0")
    assert rc == -signal.SIGTERM
    assert after.hits == 50  # the default action: no Python code runs, the last 30 are lost


def test_a_users_sigterm_handler_is_left_alone_and_its_exit_pushes(tmp_path: Path) -> None:
    rc, _, after, uncacheable = _sigterm_worker(tmp_path, "own-handler")
    assert rc == 3  # the user's handler ran, not ours
    assert after.hits == 80 and uncacheable.uncacheable == 3  # its sys.exit ran atexit, which pushed


def test_sigterm_while_the_main_thread_holds_the_push_lock_dies_in_bounded_time(tmp_path: Path) -> None:
    t0 = time.monotonic()
    rc, _, after, _ = _sigterm_worker(tmp_path, "holding-lock")
    assert rc == -signal.SIGTERM
    assert after.hits == 50  # the push could not take the lock: given up, not waited on forever
    assert time.monotonic() - t0 < 30


def test_a_store_from_before_uncacheable_gets_the_column_at_its_next_push(tmp_path: Path) -> None:
    import sqlite3

    path = str(tmp_path / "old.db")
    with sqlite3.connect(path) as conn:  # the table as earlier versions wrote it
        conn.execute(
            "CREATE TABLE fleet_stats (namespace TEXT PRIMARY KEY, hits INTEGER NOT NULL, "
            "misses INTEGER NOT NULL, errors INTEGER NOT NULL, saved REAL NOT NULL)"
        )
        conn.execute("INSERT INTO fleet_stats VALUES ('old', 4, 1, 0, 2.0)")
    conn.close()
    assert _read(path) == {"old": FleetCounts(4, 1, 0, 2.0)}
    store = SQLiteBackend(path)
    try:
        store.fleet_add({"old": FleetCounts(1, 0, 0, 0.5, 2), "new": FleetCounts(uncacheable=3)})
    finally:
        store.close()
    assert _read(path) == {"old": FleetCounts(5, 1, 0, 2.5, 2), "new": FleetCounts(uncacheable=3)}


def test_a_postgres_table_from_before_uncacheable_gets_the_column(postgres_dsn: str) -> None:
    import asyncio

    import asyncpg

    from infra.cache.backends.postgres import PostgresBackend

    prefix = "fleet" + uuid.uuid4().hex[:8]

    async def old_table() -> None:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(
                f'CREATE TABLE "{prefix}_fleet_stats" (namespace text PRIMARY KEY, hits bigint NOT NULL, '
                "misses bigint NOT NULL, errors bigint NOT NULL, saved double precision NOT NULL)"
            )
            await conn.execute(f"INSERT INTO \"{prefix}_fleet_stats\" VALUES ('old', 4, 1, 0, 2.0)")
        finally:
            await conn.close()

    asyncio.run(old_table())
    store = PostgresBackend(dsn=postgres_dsn, table=prefix, budget=1.0)
    try:
        assert store.fleet_read() == {"old": FleetCounts(4, 1, 0, 2.0)}
        store.fleet_add({"old": FleetCounts(1, 0, 0, 0.5, 2)})
        assert store.fleet_read() == {"old": FleetCounts(5, 1, 0, 2.5, 2)}
    finally:
        store.fleet_reset(None)
        store.close()
