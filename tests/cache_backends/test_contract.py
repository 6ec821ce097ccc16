"""The CacheBackend contract, kept by both shared backends against the real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from infra.cache.backends.base import StoredEntry

pytestmark = pytest.mark.services

NS = "inference"


def entry(
    payload: bytes = b"value", codec: int = 1, ttl: float | None = 60.0, cost: float = 0.25
) -> StoredEntry:
    return StoredEntry(payload, codec, None if ttl is None else time.time() + ttl, cost)


def test_set_then_get_returns_the_same_payload_codec_expiry_and_cost(
    make_backend: Callable[..., Any],
) -> None:
    b = make_backend()
    e = entry(b"\x00\xffbinary payload", codec=0x83, cost=1.5)
    b.set(NS, "k1", e)
    got = b.get(NS, "k1")
    assert got is not None
    assert (got.payload, got.codec, got.cost) == (e.payload, e.codec, e.cost)
    assert got.expires_at == pytest.approx(e.expires_at)


def test_missing_key_and_other_namespace_are_misses(make_backend: Callable[..., Any]) -> None:
    b = make_backend()
    b.set(NS, "k", entry())
    assert b.get(NS, "absent") is None
    assert b.get("embeddings", "k") is None


def test_entry_without_expiry_never_expires(make_backend: Callable[..., Any]) -> None:
    b = make_backend()
    b.set(NS, "forever", entry(ttl=None))
    got = b.get(NS, "forever")
    assert got is not None and got.expires_at is None


def test_expired_entry_is_a_miss(make_backend: Callable[..., Any]) -> None:
    b = make_backend()
    b.get(NS, "warm")  # connect (and create the schema) before the entry's clock starts
    e = entry(ttl=1.0)
    b.set(NS, "short", e)
    assert b.get(NS, "short") is not None
    assert e.expires_at is not None
    time.sleep(max(0.0, e.expires_at - time.time()) + 0.1)
    assert b.get(NS, "short") is None


def test_set_replaces_an_existing_entry(make_backend: Callable[..., Any]) -> None:
    b = make_backend()
    b.set(NS, "k", entry(b"one"))
    b.set(NS, "k", entry(b"two", codec=2))
    got = b.get(NS, "k")
    assert got is not None and (got.payload, got.codec) == (b"two", 2)


def test_get_many_returns_only_hits_and_set_many_stores_all(make_backend: Callable[..., Any]) -> None:
    b = make_backend()
    items = {f"k{i}": entry(f"v{i}".encode(), codec=1 + i % 3) for i in range(100)}
    b.set_many(NS, items)
    got = b.get_many(NS, [*items, "nope1", "nope2"])
    assert set(got) == set(items)
    assert all(got[k].payload == items[k].payload and got[k].codec == items[k].codec for k in items)
    assert b.get_many(NS, []) == {}


def test_delete_reports_whether_an_entry_was_there(make_backend: Callable[..., Any]) -> None:
    b = make_backend()
    b.set(NS, "k", entry())
    assert b.delete(NS, "k") is True
    assert b.get(NS, "k") is None
    assert b.delete(NS, "k") is False


def test_invalidate_bumps_generation_and_makes_old_entries_misses(make_backend: Callable[..., Any]) -> None:
    b = make_backend()
    b.set(NS, "old", entry())
    b.set("api", "other", entry())
    assert b.invalidate(NS) == 1
    assert b.get(NS, "old") is None
    assert b.get_many(NS, ["old"]) == {}
    assert b.get("api", "other") is not None  # other namespaces untouched
    assert b.generations()[NS] == 1
    b.set(NS, "new", entry())
    assert b.get(NS, "new") is not None
    assert b.invalidate(NS) == 2


def test_invalidation_by_another_client_is_honoured_by_the_next_read(
    make_backend: Callable[..., Any],
) -> None:
    """No notification needed: the read itself compares generations."""
    a, b = make_backend(listen=False), make_backend(listen=False)
    a.set(NS, "k", entry())
    assert b.get(NS, "k") is not None
    b.invalidate(NS)
    assert a.get(NS, "k") is None


def test_writer_with_a_stale_generation_writes_an_invisible_entry(make_backend: Callable[..., Any]) -> None:
    """A value computed before an invalidation must not be served after it."""
    a, b = make_backend(listen=False), make_backend(listen=False)
    assert a.get(NS, "warm") is None  # a has seen generation 0
    b.invalidate(NS)
    a.set(NS, "k", entry())
    got = b.get(NS, "k")
    # postgres stamps the generation inside the INSERT (current: visible); redis stamps the one it last saw
    # (stale: invisible). Either way no entry of an older generation is ever returned as current.
    if got is not None:
        assert b.name == "postgres"
    assert a.get(NS, "k") == got


def test_purge_removes_stale_generation_entries(make_backend: Callable[..., Any]) -> None:
    b = make_backend(listen=False)
    b.set_many(NS, {f"k{i}": entry() for i in range(10)})
    b.invalidate(NS)
    b.set(NS, "fresh", entry())
    assert b.purge(limit=1000) >= 10
    assert b.get(NS, "fresh") is not None
    assert b.stats().by_namespace[NS][0] == 1


def test_purge_is_bounded_by_its_limit(make_backend: Callable[..., Any]) -> None:
    b = make_backend(listen=False)
    b.set_many(NS, {f"k{i}": entry() for i in range(30)})
    b.invalidate(NS)
    assert b.purge(limit=7) == 7


def test_clear_one_namespace_or_all(make_backend: Callable[..., Any]) -> None:
    b = make_backend()
    b.set_many(NS, {"a": entry(), "b": entry()})
    b.set("api", "c", entry())
    assert b.clear(NS) == 2
    assert b.get("api", "c") is not None
    assert b.clear() == 1
    assert b.stats().entries == 0


def test_namespace_with_separator_and_glob_characters_stays_separate(
    make_backend: Callable[..., Any],
) -> None:
    b = make_backend()
    b.set("a:b", "k", entry(b"1"))
    b.set("a", "b:k", entry(b"2"))
    b.set("x*", "k", entry(b"3"))
    b.set("xy", "k", entry(b"4"))
    assert b.get("a:b", "k").payload == b"1"
    assert b.get("a", "b:k").payload == b"2"
    assert b.clear("x*") == 1
    assert b.get("xy", "k") is not None


def test_stats_and_inspect_count_entries_and_payload_bytes(make_backend: Callable[..., Any]) -> None:
    b = make_backend()
    b.set_many(NS, {"a": entry(b"x" * 100), "b": entry(b"y" * 50)})
    b.set("api", "c", entry(b"z" * 10, cost=2.0))
    s = b.stats()
    assert (s.entries, s.bytes) == (3, 160)
    assert s.by_namespace == {NS: (2, 150), "api": (1, 10)}
    assert "password" not in repr(s.extra) and s.extra["backend"] == b.name
    rows = b.inspect(namespace="api")
    assert [(r.namespace, r.key, r.size, r.cost) for r in rows] == [("api", "c", 10, 2.0)]
    assert len(b.inspect(limit=2)) == 2


def test_lease_is_exclusive_until_released(make_backend: Callable[..., Any]) -> None:
    b = make_backend()
    assert b.acquire_lease(NS, "k", "owner-a", 30.0) is True
    assert b.acquire_lease(NS, "k", "owner-b", 30.0) is False
    b.release_lease(NS, "k", "owner-b")  # not the owner: nothing released
    assert b.acquire_lease(NS, "k", "owner-c", 30.0) is False
    b.release_lease(NS, "k", "owner-a")
    assert b.acquire_lease(NS, "k", "owner-b", 30.0) is True


def test_lease_is_reentrant_for_its_owner(make_backend: Callable[..., Any]) -> None:
    b = make_backend()
    assert b.acquire_lease(NS, "k", "owner-a", 30.0) is True
    assert b.acquire_lease(NS, "k", "owner-a", 30.0) is True
    assert b.acquire_lease(NS, "k", "owner-b", 30.0) is False


def test_lease_of_a_dead_holder_expires_after_its_timeout(make_backend: Callable[..., Any]) -> None:
    b = make_backend()
    assert b.acquire_lease(NS, "k", "dead-holder", 0.3) is True
    assert b.acquire_lease(NS, "k", "waiter", 30.0) is False
    time.sleep(0.4)
    assert b.acquire_lease(NS, "k", "waiter", 30.0) is True
    b.release_lease(NS, "k", "dead-holder")  # late release of a taken-over lease does nothing
    assert b.acquire_lease(NS, "k", "third", 30.0) is False


def _dead_pid() -> int:
    import subprocess

    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


async def test_a_lease_held_by_a_dead_process_of_this_host_is_taken_over_at_once(
    make_backend: Callable[..., Any],
) -> None:
    """Issue 17 item 7: a holder that died blocked its key for the rest of the lease (28.5 s of 30 s). An
    owner is ``host:pid:...`` (as ``Cache`` names itself): a pid of this host that no longer exists is dead.
    Live pids and other hosts are never judged; a late release by the dead owner frees nothing."""
    import os
    import socket

    b = make_backend()
    host = socket.gethostname()
    dead = f"{host}:{_dead_pid()}:cafe"
    assert b.acquire_lease(NS, "k", dead, 30.0) is True
    assert b.acquire_lease(NS, "k", f"{host}:{os.getpid()}:beef", 30.0) is True  # taken over at once
    b.release_lease(NS, "k", dead)
    assert b.acquire_lease(NS, "k", "third", 30.0) is False  # (the new holder still has it)
    assert b.acquire_lease(NS, "live", f"{host}:{os.getppid()}:1", 30.0) is True  # a live process
    assert b.acquire_lease(NS, "live", "waiter", 30.0) is False
    assert b.acquire_lease(NS, "remote", f"other-host:{_dead_pid()}:1", 30.0) is True  # another host's
    assert b.acquire_lease(NS, "remote", "waiter", 30.0) is False
    dead2 = f"{host}:{_dead_pid()}:cafe"
    assert await b.aacquire_lease(NS, "k2", dead2, 30.0) is True  # and the async twin does the same
    assert await b.aacquire_lease(NS, "k2", "async-waiter", 30.0) is True
    await b.aclose()


def test_concurrent_lease_attempts_have_exactly_one_winner(make_backend: Callable[..., Any]) -> None:
    b = make_backend()
    wins: list[str] = []
    barrier = threading.Barrier(16)

    def attempt(i: int) -> None:
        barrier.wait()
        if b.acquire_lease(NS, "hot", f"owner-{i}", 30.0):
            wins.append(f"owner-{i}")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(wins) == 1


def test_sync_api_from_many_threads_loses_nothing(make_backend: Callable[..., Any]) -> None:
    b = make_backend()
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                b.set(NS, f"t{t}-{i}", entry(f"{t}-{i}".encode()))
                got = b.get(NS, f"t{t}-{i}")
                assert got is not None and got.payload == f"{t}-{i}".encode()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert b.stats().entries == 200


def test_byte_caps_are_enforced_by_maintenance(make_backend: Callable[..., Any]) -> None:
    b = make_backend(max_bytes=10_000, namespace_max_bytes={"api": 1_000}, listen=False)
    b.set_many("api", {f"a{i}": entry(b"x" * 100) for i in range(20)})
    b.set_many(NS, {f"n{i}": entry(b"y" * 1000) for i in range(15)})
    evicted = b.maintain()
    s = b.stats()
    assert evicted > 0
    assert s.by_namespace.get("api", (0, 0))[1] <= 1_000
    assert 0 < s.bytes <= 10_000


def test_postgres_eviction_takes_the_least_recently_used_and_no_more(make_pg: Callable[..., Any]) -> None:
    b = make_pg(namespace_max_bytes={"api": 1_000}, listen=False)
    b.set_many("api", {f"a{i:02d}": entry(b"x" * 100) for i in range(20)})
    time.sleep(0.01)
    assert b.get("api", "a00") is not None  # touched: now the most recently used
    assert b.maintain() == 10
    live = set(b.get_many("api", [f"a{i:02d}" for i in range(20)]))
    assert live == {"a00"} | {f"a{i:02d}" for i in range(11, 20)}


async def test_async_twins_round_trip_on_the_callers_loop(make_backend: Callable[..., Any]) -> None:
    b = make_backend()
    try:
        await b.aset(NS, "k", entry(b"async"))
        got = await b.aget(NS, "k")
        assert got is not None and got.payload == b"async"
        await b.aset_many(NS, {"x": entry(b"1"), "y": entry(b"2")})
        assert set(await b.aget_many(NS, ["x", "y", "z"])) == {"x", "y"}
        assert await b.aacquire_lease(NS, "k", "o", 10.0) is True
        assert await b.aacquire_lease(NS, "k", "p", 10.0) is False
        await b.arelease_lease(NS, "k", "o")
        assert await b.ainvalidate(NS) == 1
        assert await b.aget(NS, "k") is None
        await b.aset(NS, "x", entry(b"3"))
        assert await b.adelete(NS, "x") is True
        assert await b.aget(NS, "x") is None
        # many concurrent operations on one loop share the loop's connections
        await asyncio.gather(*(b.aset(NS, f"c{i}", entry()) for i in range(40)))
        got_all = await asyncio.gather(*(b.aget(NS, f"c{i}") for i in range(40)))
        assert all(g is not None for g in got_all)
    finally:
        await b.aclose()


def test_sync_api_works_inside_a_running_event_loop(make_backend: Callable[..., Any]) -> None:
    """A sync call made from async code (blocking, but it must not fail)."""
    b = make_backend()

    async def main() -> bytes | None:
        b.set(NS, "k", entry(b"from-loop"))
        got = b.get(NS, "k")
        return None if got is None else got.payload

    assert asyncio.run(main()) == b"from-loop"


def test_repr_and_stats_never_show_the_password(make_backend: Callable[..., Any]) -> None:
    b = make_backend()
    assert "@" not in repr(b)
    assert "://" in b.origin and "@" not in b.origin


def test_forked_child_uses_its_own_connections_and_parent_keeps_working(
    make_backend: Callable[..., Any],
) -> None:
    import os

    b = make_backend()
    b.set(NS, "k", entry(b"before-fork"))
    assert b.get(NS, "k") is not None  # parent's connections and loops exist now
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            got = b.get(NS, "k")
            b.set(NS, "child", entry(b"from-child"))
            code = 0 if got is not None and got.payload == b"before-fork" else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    got = b.get(NS, "child")
    assert got is not None and got.payload == b"from-child"
    assert b.get(NS, "k") is not None
