"""Connection slots: at most ``max_per_host`` calls in flight per origin and ``max_connections`` in all.

We hold our own limiters in front of the backend's pool (whose limits are set the same, as a backstop)
for three reasons: the limits then mean the same thing for aiohttp, httpx/h2 and the sync client (httpx
has no per-host limit); the pool wait can be measured without a tracing hook on every request; and the
wait is bounded by the call's deadline like every other phase. A lease is released exactly once, without
awaiting, so cleanup survives cancellation (even a second cancel during cleanup).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from infra.http._metrics import NullMetrics

__all__ = ["AsyncLease", "SyncLease", "acquire_async", "acquire_sync"]


class AsyncLease:
    __slots__ = ("_global", "_host", "_metrics", "_stats", "released")

    def __init__(
        self, host_sem: asyncio.Semaphore, global_sem: asyncio.Semaphore, metrics: NullMetrics, stats: Any
    ) -> None:
        self._host = host_sem
        self._global = global_sem
        self._metrics = metrics
        self._stats = stats
        self.released = False
        stats.in_use += 1
        metrics.active(1)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._global.release()
            self._host.release()
            self._stats.in_use -= 1
            self._metrics.active(-1)


async def acquire_async(
    host_sem: asyncio.Semaphore, global_sem: asyncio.Semaphore, metrics: NullMetrics, stats: Any
) -> AsyncLease:
    """Take a per-host then a global slot (always in that order, so waiters can't deadlock)."""
    if host_sem.locked() or global_sem.locked():
        start = time.monotonic()
        await host_sem.acquire()
        try:
            await global_sem.acquire()
        except BaseException:
            host_sem.release()
            raise
        metrics.pool_wait(time.monotonic() - start)
    else:  # neither blocks: acquire() returns without yielding
        await host_sem.acquire()
        await global_sem.acquire()
    return AsyncLease(host_sem, global_sem, metrics, stats)


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
    """Blocking twin of acquire_async; None when no slot freed up within ``timeout`` seconds."""
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
