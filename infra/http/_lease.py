"""Connection slots: at most ``max_per_host`` calls in flight per origin and ``max_connections`` in all.

We hold our own limiters in front of the backend's pool (whose limits are set the same, as a backstop)
for three reasons: the limits then mean the same thing for aiohttp, httpx/h2 and the sync client (httpx
has no per-host limit); the pool wait can be measured without a tracing hook on every request; and the
wait is bounded by the call's deadline like every other phase. A lease is released exactly once, without
awaiting, so cleanup survives cancellation (even a second cancel during cleanup).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import Any

from infra.http._metrics import NullMetrics

__all__ = ["AsyncGate", "AsyncLease", "SyncLease", "acquire_sync", "release_slots", "wait_slots"]


class AsyncGate:
    """A FIFO counting limiter for one event loop, cheaper than ``asyncio.Semaphore`` on the hot path.

    Taking a free slot is two attribute operations and no coroutine (``asyncio.Semaphore.acquire`` is a
    coroutine, and ``locked()`` scans its waiters); a release with callers queued hands the slot straight
    to the first live one, so a newcomer can never overtake them. Invariant: ``free > 0`` only while no
    live caller waits, so ``free`` alone says whether a slot can be taken at once.
    """

    __slots__ = ("free", "waiters")

    def __init__(self, slots: int) -> None:
        self.free = slots
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def locked(self) -> bool:
        return self.free <= 0

    def release(self) -> None:
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():  # skip callers that gave up (cancelled)
                fut.set_result(None)  # the slot passes to them; ``free`` stays as it is
                return
        self.free += 1

    async def wait(self) -> None:
        """Queue for a slot (call only when ``free`` is 0). A slot handed over to a caller cancelled before
        it could run passes on to the next one, so none leaks."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()
            raise


class AsyncLease:
    __slots__ = ("_global", "_host", "_metrics", "_stats", "released")

    def __init__(
        self, host_gate: AsyncGate, global_gate: AsyncGate, metrics: NullMetrics, stats: Any
    ) -> None:
        # The slots are already taken and counted (by the caller or wait_slots); this only gives them back.
        self._host = host_gate
        self._global = global_gate
        self._metrics = metrics
        self._stats = stats
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            release_slots(self._host, self._global, self._metrics, self._stats)


def release_slots(host_gate: AsyncGate, global_gate: AsyncGate, metrics: NullMetrics, stats: Any) -> None:
    """Give back one host and one global slot (no await: runs even while a task is being cancelled)."""
    global_gate.release()
    host_gate.release()
    stats.in_use -= 1
    metrics.active(-1)


async def wait_slots(
    host_gate: AsyncGate, global_gate: AsyncGate, metrics: NullMetrics, stats: Any, loop: Any = None
) -> None:
    """Take a per-host then a global slot (always in that order, so waiters can't deadlock), queueing
    for whichever is busy. The caller's fast path takes both at once when both are free. (AsyncGate.wait
    inlined: one coroutine per queued call instead of two.) ``loop``: the running loop, if the caller has
    it at hand."""
    start = time.monotonic()
    if host_gate.free > 0:
        host_gate.free -= 1
    else:
        fut: asyncio.Future[None] = (loop or asyncio.get_running_loop()).create_future()
        host_gate.waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                host_gate.release()  # handed over, then cancelled before it could run: pass it on
            raise
    try:
        if global_gate.free > 0:
            global_gate.free -= 1
        else:
            await global_gate.wait()
    except BaseException:
        host_gate.release()
        raise
    stats.in_use += 1
    metrics.active(1)
    metrics.pool_wait(time.monotonic() - start)


class SyncLease:
    __slots__ = ("_global", "_host", "_lock", "_metrics", "_stats", "released")

    def __init__(
        self, host_sem: threading.Semaphore, global_sem: threading.Semaphore, metrics: NullMetrics, stats: Any
    ) -> None:
        self._host = host_sem
        self._global = global_sem
        self._metrics = metrics
        self._stats = stats
        self._lock = stats.lock
        self.released = False
        with self._lock:
            stats.in_use += 1
        metrics.active(1)

    def release(self) -> None:
        with self._lock:
            if self.released:
                return
            self.released = True
            self._stats.in_use -= 1
        self._global.release()
        self._host.release()
        self._metrics.active(-1)


def acquire_sync(
    host_sem: threading.Semaphore,
    global_sem: threading.Semaphore,
    metrics: NullMetrics,
    stats: Any,
    timeout: float | None,
) -> SyncLease | None:
    """Blocking twin of wait_slots; None when no slot freed up within ``timeout`` seconds."""
    if host_sem.acquire(blocking=False):
        if global_sem.acquire(blocking=False):
            return SyncLease(host_sem, global_sem, metrics, stats)
        start = time.monotonic()
        if not global_sem.acquire(timeout=timeout):
            host_sem.release()
            return None
        metrics.pool_wait(time.monotonic() - start)
        return SyncLease(host_sem, global_sem, metrics, stats)
    start = time.monotonic()
    end = None if timeout is None else start + timeout
    if not host_sem.acquire(timeout=timeout):
        return None
    left = None if end is None else max(0.0, end - time.monotonic())
    if not global_sem.acquire(timeout=left):
        host_sem.release()
        return None
    metrics.pool_wait(time.monotonic() - start)
    return SyncLease(host_sem, global_sem, metrics, stats)
