"""How ``Cache`` follows invalidations on a shared backend: the push listener first, the poll as a safety net.

The tick itself is an I/O-free function of the clock (``Cache._check_generations(now)``), so the poll
schedule is checked with synthetic clock values against the real backends, without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from infra.cache import Cache, CacheConfig
from infra.cache.backends.base import CacheBackend

pytestmark = pytest.mark.services

NS = "inference"


class Polls:
    """Counts a backend's version polls (generations and change counts), sync and async apart."""

    def __init__(self, backend: Any) -> None:
        self.sync = 0
        self.asyn = 0
        real_sync, real_async = backend.versions, backend.aversions

        def versions() -> dict[str, tuple[int, int]]:
            self.sync += 1
            return real_sync()  # type: ignore[no-any-return]

        async def aversions() -> dict[str, tuple[int, int]]:
            self.asyn += 1
            return await real_async()  # type: ignore[no-any-return]

        backend.versions, backend.aversions = versions, aversions


@pytest.fixture
def caches() -> Iterator[Callable[..., Cache]]:
    made: list[Cache] = []

    def make(backend: CacheBackend, **kw: Any) -> Cache:
        c = Cache(
            CacheConfig(backend=backend.name), signing_key=b"k", backend=backend, export_metrics=False, **kw
        )
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def wait_listening(backend: CacheBackend) -> int:
    deadline = time.monotonic() + 10
    while (epoch := backend.push_state()) is None:
        assert time.monotonic() < deadline, "the push listener never connected"
        time.sleep(0.01)
    return epoch


def test_a_cache_subscribes_to_its_backends_push(
    make_backend: Callable[..., Any], caches: Callable[..., Cache]
) -> None:
    """Building a ``Cache`` over a shared backend starts its listener; another process's invalidation then
    sets the generation and drops that namespace's L1 entries (and only that namespace's)."""
    cache = caches(make_backend(), poll_interval=60.0, push_poll_interval=60.0)
    wait_listening(cache.backend)  # type: ignore[arg-type]
    cache.set(NS, "k", "v")
    cache.set("embeddings", "k", "other namespace")
    gen = cache.namespace_generation(NS)
    other = make_backend()
    try:
        new = other.invalidate(NS)
    finally:
        other.close()
    deadline = time.monotonic() + 10
    while (NS, "k") in cache.l1 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert (NS, "k") not in cache.l1
    assert cache.namespace_generation(NS) == new != gen
    assert ("embeddings", "k") in cache.l1


def test_polls_seldom_while_the_listener_is_up(
    make_backend: Callable[..., Any], caches: Callable[..., Cache]
) -> None:
    """Listener up: one poll when its epoch is first seen, then one per ``push_poll_interval``."""
    backend = make_backend()
    cache = caches(backend, poll_interval=0.1, push_poll_interval=1.0)
    cache.get(NS, "k")  # the namespace exists: there is something to poll for
    wait_listening(backend)
    polls = Polls(backend)
    t = time.time() + 100.0  # synthetic clock, far from anything already scheduled
    for dt in (0.0, 0.2, 0.4, 0.6, 0.8):
        cache._check_generations(t + dt)
    assert polls.sync == 1
    cache._check_generations(t + 1.1)
    assert polls.sync == 2


def test_polls_every_tick_without_a_listener(
    make_backend: Callable[..., Any], caches: Callable[..., Cache]
) -> None:
    """No push listener (``listen=False``, or while it is down): the 0.1 s poll of every backend."""
    backend = make_backend(listen=False)
    cache = caches(backend, poll_interval=0.1, push_poll_interval=1.0)
    cache.get(NS, "k")
    assert backend.push_state() is None
    polls = Polls(backend)
    t = time.time() + 100.0
    for dt in (0.0, 0.1, 0.2, 0.3):
        cache._check_generations(t + dt)
    assert polls.sync == 4


async def test_async_paths_await_agenerations_never_the_blocking_call(
    make_backend: Callable[..., Any], caches: Callable[..., Cache]
) -> None:
    """aget / aget_many / aget_or_compute on a fresh namespace and across ticks: every poll is awaited."""
    backend = make_backend(listen=False)
    cache = caches(backend, poll_interval=0.01, push_poll_interval=0.01)
    polls = Polls(backend)
    for i in range(5):
        await cache.aget(NS, f"k{i}")
        await cache.aget_many(NS, [f"k{i}", "x"])
        assert await cache.aget_or_compute("fresh", f"k{i}", lambda: "v") == "v"
        await asyncio.sleep(0.02)  # a tick (and a poll) is due on the next call
    await cache.aclose()  # this loop's connections, before the loop goes
    assert polls.sync == 0
    assert polls.asyn >= 5


def _drop_listener(backend: Any, server: str) -> None:
    """Cut the backend's push connection from the server side (``server``: its URL / DSN)."""
    if backend.name == "redis":
        import redis

        r = redis.Redis.from_url(server)
        try:
            assert r.client_kill_filter(_type="pubsub") >= 1
        finally:
            r.close()
        return
    import asyncpg

    pid = backend.listener_pid

    async def kill() -> None:
        conn = await asyncpg.connect(server)
        try:
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await conn.close()

    asyncio.run(kill())


def test_a_resubscribed_listener_triggers_a_poll_at_once(
    make_backend: Callable[..., Any], caches: Callable[..., Cache], request: pytest.FixtureRequest
) -> None:
    """Invalidations made while the listener was away were never pushed: its new epoch makes the next
    tick poll at once, without waiting for ``push_poll_interval``."""
    backend = make_backend()
    cache = caches(backend, poll_interval=60.0, push_poll_interval=60.0)
    cache.set(NS, "k", "v")
    epoch = wait_listening(backend)
    t = time.time() + 100.0
    cache._check_generations(t)  # the first epoch seen: one poll
    polls = Polls(backend)
    cache._check_generations(t + 0.5)
    assert polls.sync == 0  # listener up, same epoch: nothing due for 60 s
    _drop_listener(
        backend, request.getfixturevalue("redis_url" if backend.name == "redis" else "pg_cache_dsn")
    )
    deadline = time.monotonic() + 10
    while backend.push_state() in (None, epoch) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.push_state() not in (None, epoch)
    cache._check_generations(t + 1.0)
    assert polls.sync == 1


def test_a_forked_child_listens_afresh_even_while_it_answers_from_l1(
    make_backend: Callable[..., Any], caches: Callable[..., Cache]
) -> None:
    """The parent's listener does not survive ``fork``; the child's ``Cache`` answers from L1 and never
    touches the backend, yet it gets its own listener (re-armed from the tick) and invalidations pushed."""
    import os

    cache = caches(make_backend(), poll_interval=60.0, push_poll_interval=60.0)
    cache.set(NS, "k", "v")
    wait_listening(cache.backend)  # type: ignore[arg-type]
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only os._exit leaves it
        code = 1
        try:
            deadline = time.monotonic() + 10
            while cache.backend.push_state() is None and time.monotonic() < deadline:  # type: ignore[union-attr]
                assert cache.get(NS, "k") == "v"  # from L1
                time.sleep(0.01)
            time.sleep(0.2)  # subscribed on the server
            cache.get(NS, "k")  # the tick sees the new epoch (one poll), before the invalidation
            os.write(ready_w, b"r")
            deadline = time.monotonic() + 10
            while (NS, "k") in cache.l1 and time.monotonic() < deadline:
                time.sleep(0.001)
            os.write(done_w, b"1" if (NS, "k") not in cache.l1 else b"0")
            code = 0
        finally:
            os._exit(code)
    try:
        assert os.read(ready_r, 1) == b"r"
        other = make_backend(listen=False)
        other.invalidate(NS)
        assert os.read(done_r, 1) == b"1"
    finally:
        _, status = os.waitpid(pid, 0)
        for fd in (ready_r, ready_w, done_r, done_w):
            os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
