"""The async twins of ``Cache`` (``aget``, ``aset``, ``aget_or_compute`` ...); ``Cache`` binds them.

None of them takes a thread hop for a local store: with the SQLite backend (``_inline``) they call the sync
path directly, since an L1 or L2 hit costs microseconds. Network backends (issue 8) are awaited through
their async methods. The lookup rules, codecs and stats are the sync core's, shared, not repeated.
"""

from __future__ import annotations

import inspect
import logging
import time as _clock
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from infra.cache._missing import MISSING
from infra.cache.backends.base import StoredEntry
from infra.cache.settings import parse_ttl
from infra.cache.singleflight import LEASE_POLL_MAX, LEASE_POLL_MIN

if TYPE_CHECKING:
    from infra.cache.core import Cache, _Namespace

__all__ = ["aclose", "adelete", "aget", "aget_many", "aget_or_compute", "ainvalidate", "aset", "aset_many"]

T = TypeVar("T")
log = logging.getLogger("infra.cache")


async def aget(self: Cache, namespace: str, key: str, default: Any = MISSING) -> Any:
    if not self.enabled:
        return default
    if self._inline:
        return self.get(namespace, key, default)
    ns = self._ns.get(namespace) or await self._anamespace(namespace)
    v = await self._alookup(ns, key)
    if v is MISSING:
        ns.stats.miss()
        return default
    return v


async def _anamespace(self: Cache, namespace: str) -> _Namespace:
    """``_namespace`` for the async paths: its generation comes from an awaited poll, not a blocking call."""
    ns = self._namespace(namespace, fetch=self._inline)
    if not self._inline and self.backend is not None:
        self._last_poll = float("-inf")  # poll now, on this loop
        self._next_gen_check = 0.0
        await self._acheck_generations(_clock.time())
    return ns


async def _alookup(self: Cache, ns: _Namespace, key: str) -> Any:
    now = _clock.time()
    if now >= self._next_gen_check:
        await self._acheck_generations(now)
    v = self._l1_get(ns, key, now)
    if v is not MISSING:
        return v
    gen = ns.gen  # read before L2: see Cache._accept
    return self._accept(ns, key, await self._al2_get(ns, key), gen)


async def _al2_get(self: Cache, ns: _Namespace, key: str) -> StoredEntry | None:
    b = self.backend
    if b is None:
        return None
    if self._inline:
        return self._l2_get(ns, key)
    try:
        return await b.aget(ns.name, key)
    except Exception as exc:
        ns.stats.error("read", exc)
        return None


async def aset(
    self: Cache, namespace: str, key: str, value: Any, ttl: float | str | None = None, *, cost: float = 0.0
) -> None:
    if ttl is not None and not (type(ttl) is float and ttl >= 0.0):
        ttl = parse_ttl(ttl)
    if not self.enabled:
        return
    if self._inline:
        self.set(namespace, key, value, ttl, cost=cost)
        return
    ns = self._ns.get(namespace) or await self._anamespace(namespace)
    se = self._prepare(ns, key, value, ttl, cost)
    if se is None or self.backend is None:
        return
    try:
        await self.backend.aset(namespace, key, se)
    except Exception as exc:
        ns.stats.error("write", exc)


async def adelete(self: Cache, namespace: str, key: str) -> bool:
    if not self.enabled:
        return False
    if self._inline or self.backend is None:
        return self.delete(namespace, key)
    ns = self._ns.get(namespace) or await self._anamespace(namespace)
    self._l1.delete((namespace, key))
    try:
        return await self.backend.adelete(namespace, key)
    except Exception as exc:
        ns.stats.error("write", exc)
        return False


async def aget_many(self: Cache, namespace: str, keys: Iterable[str]) -> dict[str, Any]:
    if not self.enabled:
        return {}
    if self._inline or self.backend is None:
        return self.get_many(namespace, keys)
    ns = self._ns.get(namespace) or await self._anamespace(namespace)
    now = _clock.time()
    if now >= self._next_gen_check:
        await self._acheck_generations(now)  # so that _many_l1 finds no tick due (no blocking poll)
    out, rest = self._many_l1(ns, keys)
    if rest:
        gen = ns.gen
        try:
            found = await self.backend.aget_many(namespace, rest)
        except Exception as exc:
            ns.stats.error("read", exc)
            found = {}
        self._many_accept(ns, rest, found, out, gen)
    return out


async def aset_many(
    self: Cache, namespace: str, mapping: Mapping[str, Any], ttl: float | str | None = None
) -> None:
    if ttl is not None and not (type(ttl) is float and ttl >= 0.0):
        ttl = parse_ttl(ttl)
    if not self.enabled:
        return
    if self._inline or self.backend is None:
        self.set_many(namespace, mapping, ttl)
        return
    ns = self._ns.get(namespace) or await self._anamespace(namespace)
    items = self._prepare_many(ns, mapping, ttl)
    if items:
        try:
            await self.backend.aset_many(namespace, items)
        except Exception as exc:
            ns.stats.error("write", exc)


async def ainvalidate(self: Cache, namespace: str) -> None:
    if not self.enabled:
        return
    if self._inline or self.backend is None:
        self.invalidate(namespace)
        return
    ns = self._ns.get(namespace) or await self._anamespace(namespace)
    try:
        ns.gen = await self.backend.ainvalidate(namespace)
    except Exception as exc:
        ns.stats.error("write", exc)
        ns.gen += 1
    self._l1.clear(namespace)


async def aget_or_compute(
    self: Cache,
    namespace: str,
    key: str,
    compute: Callable[[], Awaitable[T] | T],
    ttl: float | str | None = None,
) -> T:
    """Async ``get_or_compute``; ``compute`` may return a value or an awaitable (the leader awaits it)."""
    if ttl is not None and not (type(ttl) is float and ttl >= 0.0):
        ttl = parse_ttl(ttl)
    if not self.enabled:
        r = compute()
        return await r if inspect.isawaitable(r) else r
    ns = self._ns.get(namespace) or await self._anamespace(namespace)
    v = await self._alookup(ns, key)
    if v is not MISSING:
        return v  # type: ignore[no-any-return]
    fk = (namespace, key)
    while True:
        flight, leader = self._sf.join(fk)
        if leader:
            break
        try:
            await flight.await_result()
        except BaseException:
            if flight.retry:
                continue
            ns.stats.miss()  # the leader's exception: nothing came from the cache (see get_or_compute)
            raise
        if flight.retry:
            continue
        ns.stats.hit(0.0)
        stored, how = flight.result  # the leader's result, as a form each follower copies
        return stored if how is None else how(stored)  # type: ignore[no-any-return]
    leased = False
    try:
        gen = ns.gen
        v = self._accept(ns, key, await self._al2_get(ns, key), gen)
        if v is MISSING and self.backend is not None:
            leased, v = await self._alease_or_wait(ns, key)
        if v is MISSING:
            ns.stats.miss()  # counted once per call: see Cache.get_or_compute
            t0 = _clock.perf_counter()
            r = compute()
            v = await r if inspect.isawaitable(r) else r
            await self.aset(namespace, key, v, ttl, cost=_clock.perf_counter() - t0)
    except BaseException as exc:
        self._sf.finish(fk, flight, None, exc)
        raise
    finally:
        if leased:
            await self._arelease(ns, key)
    self._sf.finish(fk, flight, self._shared(ns, key, v), None)
    return v  # type: ignore[no-any-return]


async def _alease_or_wait(self: Cache, ns: _Namespace, key: str) -> tuple[bool, Any]:
    import asyncio

    b = self.backend
    assert b is not None
    deadline = _clock.perf_counter() + self.settings.lease_timeout
    delay = LEASE_POLL_MIN
    while True:
        try:
            if self._inline:
                got = b.acquire_lease(ns.name, key, self._owner, self.settings.lease_timeout)
            else:
                got = await b.aacquire_lease(ns.name, key, self._owner, self.settings.lease_timeout)
        except Exception as exc:
            ns.stats.error("lease", exc)
            return False, MISSING
        if got:
            # as in Cache._lease_or_wait: the holder may have set and released since our last L2 miss
            gen = ns.gen
            v = self._accept(ns, key, await self._al2_get(ns, key), gen)
            if v is MISSING:
                return True, MISSING
            await self._arelease(ns, key)
            return False, v
        if _clock.perf_counter() >= deadline:
            return False, MISSING
        await asyncio.sleep(delay)
        delay = min(delay * 2, LEASE_POLL_MAX)
        gen = ns.gen
        v = self._accept(ns, key, await self._al2_get(ns, key), gen)
        if v is not MISSING:
            return False, v


async def _arelease(self: Cache, ns: _Namespace, key: str) -> None:
    try:
        assert self.backend is not None
        if self._inline:
            self.backend.release_lease(ns.name, key, self._owner)
        else:
            await self.backend.arelease_lease(ns.name, key, self._owner)
    except Exception as exc:
        ns.stats.error("lease", exc)


async def aclose(self: Cache) -> None:
    """Close what belongs to the calling event loop (a network backend's connections opened on it) and
    flush the stats; the cache itself stays open for other loops and for sync code (issue 14: ``await
    get_cache().aclose()`` at the end of one ``asyncio.run`` used to turn the process-wide cache off).
    ``close()`` closes the cache for good."""
    if self._export:
        for ns in list(self._ns.values()):
            ns.stats.flush()
    b = self.backend
    if b is None or self._closed:
        return
    try:
        await b.arelease_loop()
    except Exception as exc:
        log.debug("cache backend %r: releasing this loop's connections failed: %s", b, exc)
