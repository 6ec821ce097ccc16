"""The server goes away mid-run: calls still return correct results, errors are counted, the backend fails
fast while down (no connect timeout per call) and recovers by itself once the server is back.

Redis: our own redis-server, killed and restarted on the same port. PostgreSQL: the shared cluster is never
stopped; sessions are killed with pg_terminate_backend, and a TCP proxy in front of it is stopped (every
connection dropped, new ones refused) and started again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from infra.cache import Cache, CacheConfig
from infra.cache.backends.base import CacheBackend, StoredEntry
from infra.errors import CacheError

from ._servers import RedisServer, TcpProxy
from .conftest import TEST_BUDGET, unique_prefix, via_proxy

pytestmark = pytest.mark.services

NS = "api"


def make_cache(backend: CacheBackend) -> Cache:
    return Cache(CacheConfig(backend=backend.name), signing_key=b"k", backend=backend, export_metrics=False)


def run_calls(cache: Cache, keys: range, calls: list[str]) -> list[Any]:
    def compute(k: int) -> Callable[[], str]:
        def f() -> str:
            calls.append(f"k{k}")
            return f"value-{k}"

        return f

    return [cache.get_or_compute(NS, f"k{k}", compute(k)) for k in keys]


def wait_until_backend_works(backend: CacheBackend, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            backend.set(NS, "probe", StoredEntry(b"p", 1))
            if backend.get(NS, "probe") is not None:
                return
        except CacheError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("backend did not recover")
        time.sleep(0.05)


def check_outage(cache: Cache, backend: CacheBackend, calls: list[str], first: int) -> None:
    """During an outage: right results, computations run, errors counted, and fast failure."""
    before = cache.namespace_stats(NS)["errors"]
    out = run_calls(cache, range(first, first + 10), calls)
    assert out == [f"value-{k}" for k in range(first, first + 10)]
    assert calls[-10:] == [f"k{k}" for k in range(first, first + 10)]
    assert cache.namespace_stats(NS)["errors"] > before
    assert backend.gate.down  # type: ignore[attr-defined]
    with pytest.raises(CacheError, match="unavailable"):
        backend.get(NS, "k0")  # refused by the gate, no connect attempt


def check_recovery(cache: Cache, backend: CacheBackend, calls: list[str], first: int) -> None:
    """Back to normal: computed once, then served from the store to a cache with an empty L1."""
    wait_until_backend_works(backend)
    n = len(calls)
    keys = range(first, first + 5)
    assert run_calls(cache, keys, calls) == [f"value-{k}" for k in keys]
    fresh = make_cache(backend)
    assert run_calls(fresh, keys, calls) == [f"value-{k}" for k in keys]
    assert len(calls) == n + 5


def test_redis_killed_mid_run_then_restarted(own_redis: RedisServer) -> None:
    from infra.cache.backends.redis import RedisBackend

    backend = RedisBackend(url=own_redis.url, prefix=unique_prefix(), budget=TEST_BUDGET)
    cache = make_cache(backend)
    calls: list[str] = []
    try:
        assert run_calls(cache, range(10), calls) == [f"value-{k}" for k in range(10)]
        own_redis.stop()
        check_outage(cache, backend, calls, 10)
        own_redis.start()
        check_recovery(cache, backend, calls, 100)
    finally:
        cache.close()


def test_postgres_sessions_terminated_then_proxy_stopped_and_restarted(
    pg_cache_dsn: str, pg_proxy: TcpProxy
) -> None:
    from infra.cache.backends.postgres import PostgresBackend

    backend = PostgresBackend(
        dsn=via_proxy(pg_cache_dsn, pg_proxy), table=unique_prefix(), budget=TEST_BUDGET
    )
    cache = make_cache(backend)
    calls: list[str] = []
    try:
        assert run_calls(cache, range(10), calls) == [f"value-{k}" for k in range(10)]
        # 1. the server kills our sessions (admin_shutdown); the server itself stays up
        asyncio.run(_terminate_sessions(pg_cache_dsn))
        out = run_calls(cache, range(20, 25), calls)
        assert out == [f"value-{k}" for k in range(20, 25)]
        check_recovery(cache, backend, calls, 100)
        # 2. the server goes away entirely (every connection dropped, new ones refused)
        pg_proxy.stop()
        check_outage(cache, backend, calls, 40)
        pg_proxy.start()
        check_recovery(cache, backend, calls, 200)
    finally:
        cache.close()


async def test_postgres_async_path_recovers_on_the_callers_loop(
    pg_cache_dsn: str, pg_proxy: TcpProxy
) -> None:
    from infra.cache.backends.postgres import PostgresBackend

    backend = PostgresBackend(
        dsn=via_proxy(pg_cache_dsn, pg_proxy), table=unique_prefix(), listen=False, budget=TEST_BUDGET
    )
    try:
        await backend.aset(NS, "k", StoredEntry(b"v", 1))
        pg_proxy.stop()
        with pytest.raises(CacheError):
            await backend.aget(NS, "k")
        with pytest.raises(CacheError, match="unavailable"):
            await backend.aget(NS, "k")
        pg_proxy.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                got = await backend.aget(NS, "k")
                break
            except CacheError:
                assert time.monotonic() < deadline, "no recovery"
                await asyncio.sleep(0.05)
        assert got is not None and got.payload == b"v"
    finally:
        await backend.aclose()


async def _terminate_sessions(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND application_name = 'infra-cache'"
        )
    finally:
        await conn.close()


def test_postgres_statement_stuck_past_op_timeout_fails_open(
    make_pg: Callable[..., Any], pg_cache_dsn: str
) -> None:
    """A hung server (here: a lock another session holds) must not hang the caller: the watchdog terminates
    the statement after op_timeout and the call raises CacheError; the next call works again.

    The reading thread has read once before, so the stuck read is the hit path's prepared statement on an
    open connection: what the watchdog (which costs the hit path nothing) has to catch."""
    import concurrent.futures

    import asyncpg

    from infra.cache.backends.postgres import conns as pgconns

    b = make_pg(op_timeout=0.5, listen=False)
    b.set(NS, "k", StoredEntry(b"v", 1))
    assert b.get(NS, "k") is not None
    reader = concurrent.futures.ThreadPoolExecutor(1)
    assert reader.submit(b.get, NS, "k").result() is not None  # that thread's connection, prepared
    busy_seen: list[int] = []
    real_busy = pgconns.ConnSet.busy

    def busy(cs: Any) -> list[tuple[Any, int]]:
        found = real_busy(cs)
        busy_seen.extend(started for _, started in found)
        return found

    async def hold_lock_then_read() -> None:
        blocker = await asyncpg.connect(pg_cache_dsn)
        try:
            async with blocker.transaction():
                await blocker.execute(f"LOCK TABLE {b.sql.entries} IN ACCESS EXCLUSIVE MODE")
                t0 = time.monotonic()
                with pytest.raises(CacheError):
                    # bounded: a watchdog that never fires fails the test instead of hanging it
                    await asyncio.wait_for(asyncio.wrap_future(reader.submit(b.get, NS, "k")), 10)
                assert time.monotonic() - t0 < 0.5 + 1.0  # op_timeout, plus at most a few watchdog ticks
        finally:
            await blocker.close()

    try:
        pgconns.ConnSet.busy = busy  # type: ignore[method-assign]
        asyncio.run(hold_lock_then_read())
    finally:
        pgconns.ConnSet.busy = real_busy  # type: ignore[method-assign]
        reader.shutdown()
    assert busy_seen and all(n > 0 for n in busy_seen)  # asyncpg's statement count is there to compare
    wait_until_backend_works(b)
    assert b.get(NS, "k") is not None


def test_redis_a_command_error_is_a_cache_error_and_leaves_the_gate_closed(
    make_redis: Callable[..., Any], redis_url: str
) -> None:
    """The server answered with an error (not a lost connection): both twins raise the gate's
    ``CacheError`` naming it, the gate stays closed, and the next good answer goes through."""
    import redis

    backend = make_redis()
    r = redis.Redis.from_url(redis_url)
    r.set(f"{backend.prefix}:gens", "not a hash")  # HGETALL on it: WRONGTYPE

    async def both_twins() -> None:
        try:
            with pytest.raises(CacheError, match="WRONGTYPE"):
                backend.generations()
            with pytest.raises(CacheError, match="WRONGTYPE"):
                await backend.agenerations()
            assert not backend.gate.down
            r.delete(f"{backend.prefix}:gens")
            assert backend.generations() == {} and await backend.agenerations() == {}
        finally:
            await backend.aclose()
            r.delete(f"{backend.prefix}:gens")
            r.close()

    asyncio.run(both_twins())
