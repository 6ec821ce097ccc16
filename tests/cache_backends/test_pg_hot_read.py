"""The PostgreSQL hit path's generation check against the real server.

While its LISTEN connection is up and loaded, the backend reads a row with its generation and compares it
with its ``GenerationView`` instead of asking the server in the same statement. These tests pin what that
may and may not change: our own invalidation is honoured by the very next read, another host's within
milliseconds (its NOTIFY), a generation changed behind the notifications' back (a direct UPDATE, tables made
again) within a reload period, and a row newer than the view is checked with the server, never dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from infra.cache.backends.base import StoredEntry

pytestmark = pytest.mark.services

NS = "inference"


def entry(payload: bytes = b"v") -> StoredEntry:
    return StoredEntry(payload, 1, time.time() + 60, 0.1)


def live(b: Any, timeout: float = 10.0) -> Any:
    """Wait for the listener to be connected and its view loaded."""
    b.get(NS, "warm")  # starts the background tasks
    deadline = time.monotonic() + timeout
    while not b.generation_view.live:
        assert time.monotonic() < deadline, "the listener never loaded its view"
        time.sleep(0.01)
    return b


def sql(dsn: str, statement: str, *args: Any) -> Any:
    """Run one statement on a connection of its own (another client: no NOTIFY unless it sends one)."""
    import asyncpg

    async def run() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.execute(statement, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def set_generation_silently(b: Any, dsn: str, generation: int) -> None:
    sql(
        dsn,
        f"INSERT INTO {b.sql.gens} (namespace, generation) VALUES ($1, $2) "
        "ON CONFLICT (namespace) DO UPDATE SET generation = EXCLUDED.generation",
        NS,
        generation,
    )


def until(pred: Callable[[], bool], timeout: float) -> float:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout, f"not within {timeout} s"
        time.sleep(0.002)
    return time.monotonic() - t0


def test_our_own_invalidation_is_honoured_by_the_very_next_read(make_pg: Callable[..., Any]) -> None:
    b = live(make_pg())
    for i in range(20):
        b.set(NS, "k", entry())
        assert b.get(NS, "k") is not None
        b.invalidate(NS)
        assert b.get(NS, "k") is None, f"round {i}: a read right after our invalidate served the old entry"


async def test_our_own_invalidation_is_honoured_by_the_very_next_async_read(
    make_pg: Callable[..., Any],
) -> None:
    b = make_pg()
    await b.aget(NS, "warm")
    deadline = time.monotonic() + 10
    while not b.generation_view.live:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    for _ in range(20):
        await b.aset(NS, "k", entry())
        assert await b.aget(NS, "k") is not None
        await b.ainvalidate(NS)
        assert await b.aget(NS, "k") is None
    await b.aclose()


def test_another_hosts_invalidation_is_honoured_once_its_notify_arrives(make_pg: Callable[..., Any]) -> None:
    a, other = live(make_pg()), make_pg(listen=False)
    for _ in range(5):
        a.set(NS, "k", entry())
        assert a.get(NS, "k") is not None
        other.invalidate(NS)
        assert until(lambda: a.get(NS, "k") is None, 1.0) < 0.1


def test_a_generation_changed_without_a_notify_is_caught_by_the_reload(
    make_pg: Callable[..., Any], pg_cache_dsn: str
) -> None:
    """No NOTIFY at all (someone updated the table by hand): the view's reload, every second, catches it."""
    b = live(make_pg())
    b.set(NS, "k", entry())
    assert b.get(NS, "k") is not None
    set_generation_silently(b, pg_cache_dsn, 5)
    until(lambda: b.get(NS, "k") is None, 3.0)
    assert b.generation_view.gens[NS] == 5


def test_a_row_newer_than_the_view_is_checked_with_the_server_not_dropped(
    make_pg: Callable[..., Any], pg_cache_dsn: str
) -> None:
    """The view lags the server (a bump it has not heard of yet); an entry written since is current."""
    b = live(make_pg())
    set_generation_silently(b, pg_cache_dsn, 7)
    b.set(NS, "k", entry(b"new"))  # stamped with the server's generation, 7, inside the INSERT
    assert (
        b.generation_view.gens.get(NS, 0) < 7
    )  # (the reload has not run yet: the next one is up to 1 s away)
    got = b.get(NS, "k")
    assert got is not None and got.payload == b"new"


def test_a_generation_the_server_lost_is_wound_back_by_the_reload(
    make_pg: Callable[..., Any], pg_cache_dsn: str
) -> None:
    """The generations table emptied under us (tables dropped and made again): rows are written at 0 again
    while the view still says 1. A miss until the next reload, then hits: never a permanent miss."""
    b = live(make_pg())
    b.invalidate(NS)
    assert b.generation_view.gens[NS] == 1
    sql(pg_cache_dsn, f"DELETE FROM {b.sql.gens}")
    b.set(NS, "k", entry())
    until(lambda: b.get(NS, "k") is not None, 3.0)
    assert b.generation_view.gens.get(NS, 0) == 0


def test_after_the_listener_is_cut_the_view_reloads_what_it_missed(
    make_pg: Callable[..., Any], pg_cache_dsn: str
) -> None:
    """Cut the LISTEN connection and bump the generation without a NOTIFY while it is away: the view is not
    trusted meanwhile (reads check the generation in the statement), and the snapshot it loads after
    listening again has the bump."""
    import asyncpg

    b = live(make_pg())
    b.set(NS, "k", entry())
    epoch = b.push_state()
    pid = b.listener_pid

    async def cut_and_bump() -> None:
        conn = await asyncpg.connect(pg_cache_dsn)
        try:
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
            await conn.execute(
                f"INSERT INTO {b.sql.gens} (namespace, generation) VALUES ($1, 3) "
                "ON CONFLICT (namespace) DO UPDATE SET generation = 3",
                NS,
            )
        finally:
            await conn.close()

    asyncio.run(cut_and_bump())
    until(lambda: b.push_state() not in (None, epoch) and b.generation_view.live, 10.0)
    assert b.generation_view.gens[NS] == 3
    assert b.get(NS, "k") is None
