"""The cross-process half of single-flight: a lease per key in the store, so that processes sharing a
store compute a missing key once between them (``infra.cache.singleflight`` is the in-process half).

``Leases.take_or_wait`` takes the key's lease, or waits (bounded by ``lease_timeout``, polling with a
doubling delay) for its holder's result to appear in the store. The sync and async twins share the
decisions (``_Waiting``: when to give up, how long to sleep) and differ only in the awaiting. Every
failure is counted on the namespace and treated as "no lease": the caller computes (fail-open).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from infra.cache._missing import MISSING
from infra.cache.backends.base import CacheBackend
from infra.cache.namespaces import Namespace
from infra.cache.singleflight import LEASE_POLL_MAX, LEASE_POLL_MIN

__all__ = ["Leases", "holder_name"]

_perf = time.perf_counter


def holder_name(holder: object) -> str:
    """A lease holder's name: host, pid (stores check that it is alive) and the holding object."""
    return f"{socket.gethostname()}:{os.getpid()}:{id(holder):x}"


class _Waiting:
    """The wait for another holder's result: a deadline and a doubling poll delay."""

    __slots__ = ("deadline", "delay")

    def __init__(self, timeout: float) -> None:
        self.deadline = _perf() + timeout
        self.delay = LEASE_POLL_MIN

    def next_sleep(self) -> float | None:
        """Seconds to sleep before the next look, or None: the wait is over (compute without the lease)."""
        if _perf() >= self.deadline:
            return None
        d = self.delay
        self.delay = min(d * 2, LEASE_POLL_MAX)
        return d


class Leases:
    """Take and release the store's per-key leases as ``owner`` (host:pid:cache, renewed after fork)."""

    __slots__ = ("backend", "inline", "owner", "timeout")

    def __init__(self, backend: CacheBackend, owner: str, timeout: float, *, inline: bool) -> None:
        self.backend = backend
        self.owner = owner
        self.timeout = timeout
        self.inline = inline  # the backend's async methods are its sync ones: call those directly

    def take_or_wait(self, ns: Namespace, key: str, reread: Callable[[], Any]) -> tuple[bool, Any]:
        """``(True, MISSING)``: the caller holds the lease and computes; ``(False, value)``: another
        holder's result (``reread()`` found it in the store); ``(False, MISSING)``: compute without it."""
        waiting = _Waiting(self.timeout)
        while True:
            try:
                got = self.backend.acquire_lease(ns.name, key, self.owner, self.timeout)
            except Exception as exc:
                ns.stats.error("lease", exc)
                return False, MISSING
            if got:
                # A holder may have set and released between our last L2 miss and this acquire: read L2
                # once more, or we would compute a second time (seen in test_multihost under load).
                v = reread()
                if v is MISSING:
                    return True, MISSING
                self.release(ns, key)
                return False, v
            delay = waiting.next_sleep()
            if delay is None:
                return False, MISSING
            time.sleep(delay)
            v = reread()
            if v is not MISSING:
                return False, v

    async def atake_or_wait(
        self, ns: Namespace, key: str, reread: Callable[[], Awaitable[Any]]
    ) -> tuple[bool, Any]:
        """``take_or_wait`` on an event loop: the store's async calls are awaited, the sleeps too."""
        import asyncio

        b = self.backend
        waiting = _Waiting(self.timeout)
        while True:
            try:
                if self.inline:
                    got = b.acquire_lease(ns.name, key, self.owner, self.timeout)
                else:
                    got = await b.aacquire_lease(ns.name, key, self.owner, self.timeout)
            except Exception as exc:
                ns.stats.error("lease", exc)
                return False, MISSING
            if got:
                v = await reread()  # as in take_or_wait: the holder may have set and released meanwhile
                if v is MISSING:
                    return True, MISSING
                await self.arelease(ns, key)
                return False, v
            delay = waiting.next_sleep()
            if delay is None:
                return False, MISSING
            await asyncio.sleep(delay)
            v = await reread()
            if v is not MISSING:
                return False, v

    def release(self, ns: Namespace, key: str) -> None:
        try:
            self.backend.release_lease(ns.name, key, self.owner)
        except Exception as exc:
            ns.stats.error("lease", exc)

    async def arelease(self, ns: Namespace, key: str) -> None:
        try:
            if self.inline:
                self.backend.release_lease(ns.name, key, self.owner)
            else:
                await self.backend.arelease_lease(ns.name, key, self.owner)
        except Exception as exc:
            ns.stats.error("lease", exc)
