"""``Cache``: L1 (in-process LRU) in front of a ``CacheBackend`` (SQLite by default), with per-namespace
TTL and codecs, single-flight, stats, and fail-open error handling; ``get_cache()`` is the process-wide one.

Fail-open: every backend, codec or metrics failure is caught here, counted (``errors`` by reason) and
logged once per namespace and reason; ``get`` then misses, ``set`` then stores nothing, and
``get_or_compute`` returns exactly what the computation returned or raises exactly what it raised.

``Cache`` holds its collaborators, each a concept of its own module: the L1 and its probe (``l1``), the
namespaces' codecs, TTLs and counters (``namespaces``), what this process has seen of changes made
elsewhere (``changes.ChangeTracker``), the store's per-key leases (``leases``), in-process single-flight
(``singleflight``) and what it reports (``report``).

Async twins (``aget``, ``aset``, ``aget_or_compute`` ...) take no thread hop: L1 hits are plain dict
lookups and the SQLite backend answers inline in microseconds (``_inline``: they call the sync path).
Network backends (issue 8) override the backend's async methods and are awaited. The process-wide cache
(``get_cache``) lives in ``infra.cache.process`` and stays importable from here.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar

from infra.cache import fleet_stats
from infra.cache._missing import MISSING
from infra.cache.backend import GENERATION_POLL_INTERVAL, PUSH_POLL_INTERVAL, CacheBackend
from infra.cache.changes import ChangeTracker
from infra.cache.codecs import DecodeError, Signer
from infra.cache.l1 import L1Cache
from infra.cache.leases import Leases
from infra.cache.namespaces import Namespace, build_namespace
from infra.cache.report import CacheReport
from infra.cache.singleflight import Flight, SingleFlight
from infra.cache.stats import NamespaceStats
from infra.cache.store_choice import make_backend, open_backend
from infra.cache.tiers import Tiers
from infra.cache.ttl import parse_ttl
from infra.config.sections.cache import CacheConfig

__all__ = ["Cache", "make_backend"]

log = logging.getLogger("infra.cache")
T = TypeVar("T")

_time = time.time
_perf = time.perf_counter


class _Default(enum.Enum):
    BACKEND = "the backend the settings name"  # (None means: L1 only)


class Cache:
    """The cache. Build one with ``Cache(config.cache)`` (a ``CacheConfig``, the ``cache`` section of
    perf_config) or use ``get_cache()``.

    ``signing_key`` overrides the key read from the variable ``config.signing_key_env``; ``backend``
    overrides the one the settings name (tests, custom stores); ``export_metrics`` turns the
    registry export off (in-memory stats stay); ``stats=False`` counts nothing at all (the baseline the
    benchmark compares against: counting must cost a hit no more than 5%). ``poll_interval`` and
    ``push_poll_interval``: seconds between polls of the backend's versions (generations and change counts)
    without and with a connected push listener (see ``infra.cache.changes``); by default derived from
    ``config.sync_interval``, the longest another process's change may go unseen by this L1.
    """

    def __init__(
        self,
        config: CacheConfig | None = None,
        *,
        signing_key: bytes | None = None,
        backend: CacheBackend | Literal[_Default.BACKEND] | None = _Default.BACKEND,
        export_metrics: bool = True,
        stats: bool = True,
        poll_interval: float | None = None,
        push_poll_interval: float | None = None,
    ) -> None:
        s = config if config is not None else CacheConfig()
        # A tick (0.1 s at most apart while calls come) plus a poll interval stays within sync_interval.
        if poll_interval is None:
            poll_interval = min(GENERATION_POLL_INTERVAL, s.sync_interval / 2)
        if push_poll_interval is None:
            push_poll_interval = min(PUSH_POLL_INTERVAL, max(poll_interval, s.sync_interval / 2))
        if not (poll_interval > 0 and push_poll_interval > 0):
            raise ValueError(
                "poll_interval and push_poll_interval must be > 0, "
                f"got {poll_interval!r} and {push_poll_interval!r}"
            )
        self.settings = s
        self.enabled = s.enabled
        self._export = export_metrics and stats
        self._count = stats
        self._l1 = L1Cache(max_items=s.memory_items, max_bytes=s.memory_bytes)
        key = signing_key if signing_key is not None else s.signing_key()
        self._signer = Signer(key) if key else None
        self._ns: dict[str, Namespace] = {}
        self._ns_lock = threading.Lock()
        self._sf = SingleFlight()
        self._next_gen_check = 0.0
        self._tick_interval = min(GENERATION_POLL_INTERVAL, poll_interval)
        self._changes = ChangeTracker(
            self._ns, self._l1, poll_interval=poll_interval, push_poll_interval=push_poll_interval
        )
        self._report = CacheReport(export=self._export)
        self._closed = False
        self.backend: CacheBackend | None = None
        self._backend_error: str | None = None
        if self.enabled:
            self.backend, self._backend_error = open_backend(
                s,
                None if backend is _Default.BACKEND else backend,
                build=backend is _Default.BACKEND,
                signed=self._signer is not None,
            )
        self._tiers = Tiers(self._l1, self.backend, export=self._export)
        self._inline = self._tiers.inline
        # SQLite's row-tuple fast path for get() (no StoredEntry on the hottest path); others: backend.get
        self._get_row: Callable[..., Any] | None = getattr(self.backend, "get_row", None)
        self._leases: Leases | None = None
        if self.backend is not None:
            self._leases = Leases(self.backend, _owner(self), s.lease_timeout, inline=self._inline)
            self._changes.subscribe(self.backend)
        if self._export:
            from infra.cache.stats import track_for_collect

            track_for_collect(self)  # the registry folds our counts before every read (push_metrics)
            fleet_stats.track(self)  # and the store keeps every process's totals (infra.cache.fleet_stats)
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    @property
    def l1(self) -> L1Cache:
        """The in-process L1 in front of the store (``(namespace, key) in cache.l1``: is it held here)."""
        return self._l1

    @property
    def backend_error(self) -> str | None:
        """Why the store is not in use (or its last stats read failed), else None."""
        return self._backend_error

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"<Cache {state} backend={self.backend!r} l1={len(self._l1)} items>"

    # ------------------------------------------------------------------ namespaces and the tick
    def _namespace(self, name: str, *, fetch: bool = True) -> Namespace:
        """The namespace's state, created on first use with the store's generation (``fetch=False``: 0
        for now, and the next tick polls; the async paths use that, see ``_anamespace``)."""
        ns = self._ns.get(name)
        if ns is not None:
            return ns
        with self._ns_lock:
            ns = self._ns.get(name)
            if ns is not None:
                return ns
            versions = (0, 0)
            failure: Exception | None = None
            if self.backend is not None and fetch:
                try:
                    versions = self.backend.versions().get(name, (0, 0))
                except Exception as exc:
                    failure = exc
            ns = self._ns[name] = build_namespace(
                name,
                self.settings,
                signer=self._signer,
                shared=self.backend is not None and self.backend.shared,  # (only ever with a signer)
                export=self._export,
                count=self._count,
                versions=versions,
            )
        if failure is not None:
            ns.stats.error("read", failure)
        return ns

    async def _anamespace(self, namespace: str) -> Namespace:
        """``_namespace`` for the async paths: the generation comes from an awaited poll."""
        ns = self._namespace(namespace, fetch=self._inline)
        if not self._inline and self.backend is not None:
            self._changes.poll_soon()  # poll now, on this loop
            self._next_gen_check = 0.0
            await self._acheck_generations(_time())
        return ns

    def _tick(self, now: float) -> int | None:
        """Metrics export, then whether a poll of the store's versions is due (see ``infra.cache.changes``):
        the push sequence to poll under, or None."""
        self._next_gen_check = now + self._tick_interval
        if self._export:
            for ns in list(self._ns.values()):
                ns.stats.flush()
            self._report.export_evictions(self._l1, self.backend)
        else:
            for ns in list(self._ns.values()):
                ns.stats.fold()  # keeps the pending hits to a tick's worth (see infra.cache.stats)
        return None if self.backend is None else self._changes.due(self.backend, now)

    def _check_generations(self, now: float) -> None:
        """The sync tick: export metrics; poll the store's ``versions()`` when due."""
        seq = self._tick(now)
        if seq is None:
            return
        assert self.backend is not None
        try:
            versions = self.backend.versions()
        except Exception as exc:
            self._changes.failed(exc)
            return
        self._changes.apply(versions, seq)

    async def _acheck_generations(self, now: float) -> None:
        """The async tick: as ``_check_generations``, awaiting ``aversions()`` (no blocking round trip)."""
        seq = self._tick(now)
        if seq is None:
            return
        b: Any = self.backend
        try:
            aversions = getattr(b, "aversions", None)
            versions = await aversions() if aversions is not None else b.versions()
        except Exception as exc:
            self._changes.failed(exc)
            return
        self._changes.apply(versions, seq)

    # ------------------------------------------------------------------ lookups (shared core)
    def l1_hit(self, namespace: str, key: str) -> Any:
        """The value if it is a live L1 entry (counted as a hit), else ``MISSING`` and nothing counted.

        The shortest path the cache has: ``@cached`` tries it before ``get_or_compute``. Anything
        unusual (generation poll due, unknown namespace, expired) is left to the full path.
        """
        # L1Cache.probe written out (see infra.cache.l1; tests/cache/test_l1.py checks they agree)
        e = self._l1.entries.get((namespace, key))
        if e is None:
            return MISSING
        ns = self._ns.get(namespace)
        now = _time()
        if ns is None or now >= self._next_gen_check or e[2] != ns.gen or (e[1] is not None and e[1] <= now):
            return MISSING
        try:  # noqa: SIM105 - contextlib.suppress costs ~0.3 us here, half an L1 hit
            self._l1.entries.move_to_end((namespace, key))
        except KeyError:  # evicted by another thread meanwhile: still a valid answer
            pass
        count = ns.count_hit  # counting inlined: a method call here costs ~15% of an L1 hit
        if count is not None:
            count(e[3])  # L1Entry.cost
        how = e[5]  # L1Entry.thaw: a copy of its own unless the value is immutable (infra.cache.values)
        return e[0] if how is None else how(e[0])

    def _lookup(self, ns: Namespace, key: str) -> Any:
        now = _time()
        if now >= self._next_gen_check:
            self._check_generations(now)
        v = self._tiers.l1_get(ns, key, now)
        return v if v is not MISSING else self._tiers.reread(ns, key)

    async def _alookup(self, ns: Namespace, key: str) -> Any:
        now = _time()
        if now >= self._next_gen_check:
            await self._acheck_generations(now)
        v = self._tiers.l1_get(ns, key, now)
        return v if v is not MISSING else await self._tiers.areread(ns, key)

    # ------------------------------------------------------------------ the API, sync and async
    def get(self, namespace: str, key: str, default: Any = MISSING) -> Any:
        """The cached value, or ``default`` (``MISSING`` unless given) on a miss or any cache failure."""
        # The shared core (_lookup) spelled out inline: this is the hottest path of the layer.
        if not self.enabled:
            return default
        ns = self._ns.get(namespace) or self._namespace(namespace)
        now = _time()
        if now >= self._next_gen_check:
            self._check_generations(now)
        gen = ns.gen  # read before L2: see _accept
        data = self._l1.entries  # L1Cache.probe written out (see infra.cache.l1 and tests/cache/test_l1.py)
        if data:  # (an L1 that is off or empty costs the L2 path no lookup)
            k = (namespace, key)
            e = data.get(k)
            # L1Entry by index (.gen, .expires; then .cost, .thaw, .stored): ~4x cheaper than by name
            if e is not None and e[2] == gen and (e[1] is None or e[1] > now):
                try:  # noqa: SIM105 - contextlib.suppress costs ~0.3 us here, a third of an L1 hit
                    data.move_to_end(k)
                except KeyError:  # evicted by another thread meanwhile: still a valid answer
                    pass
                count = ns.count_hit  # counting inlined: a method call here costs ~15% of an L1 hit
                if count is not None:
                    count(e[3])
                how = e[5]  # a copy of its own unless the value is immutable (infra.cache.values)
                return e[0] if how is None else how(e[0])
        row = None
        try:
            get_row = self._get_row
            if get_row is not None:
                row = get_row(namespace, key, now)
            elif self.backend is not None:
                row = self.backend.get(namespace, key)
        except Exception as exc:
            ns.stats.error("read", exc)
        if row is not None:
            payload, codec, expires, cost = row  # SQLite's row tuple, or a StoredEntry
            try:
                # Plain text (codec STR, unsigned namespace) decoded inline: the common LLM answer.
                if codec == 1 and ns.plain_text:
                    v = payload.decode("utf-8", "surrogatepass")
                else:
                    v = ns.codec.decode(payload, codec)
            except (DecodeError, UnicodeDecodeError) as exc:
                ns.stats.error("decode", exc)
            else:
                if self._l1.enabled:
                    self._l1.set((namespace, key), ns.l1_entry(v, payload, codec, expires, gen, cost))
                count = ns.count_hit
                if count is not None:
                    count(cost)
                return v
        ns.stats.miss()
        return default

    async def aget(self, namespace: str, key: str, default: Any = MISSING) -> Any:
        """``get`` on an event loop."""
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

    def set(
        self, namespace: str, key: str, value: Any, ttl: float | str | None = None, *, cost: float = 0.0
    ) -> None:
        """Store ``value`` (``ttl`` seconds or ``"1h"``-style; None: the namespace's TTL; 0: never expires).
        Cache failures never raise; a malformed ``ttl`` is a ``ValueError``."""
        ttl = parse_ttl(ttl)
        if not self.enabled:
            return
        ns = self._ns.get(namespace) or self._namespace(namespace)
        se = self._tiers.prepare(ns, key, value, ttl, cost)
        b = self.backend
        if se is None or b is None:
            return
        try:
            b.set(namespace, key, se)
        except Exception as exc:
            ns.stats.error("write", exc)

    async def aset(
        self, namespace: str, key: str, value: Any, ttl: float | str | None = None, *, cost: float = 0.0
    ) -> None:
        """``set`` on an event loop."""
        ttl = parse_ttl(ttl)
        if not self.enabled or self._inline:
            self.set(namespace, key, value, ttl, cost=cost)
            return
        ns = self._ns.get(namespace) or await self._anamespace(namespace)
        se = self._tiers.prepare(ns, key, value, ttl, cost)
        if se is None or self.backend is None:
            return
        try:
            await self.backend.aset(namespace, key, se)
        except Exception as exc:
            ns.stats.error("write", exc)

    def delete(self, namespace: str, key: str) -> bool:
        """Remove one entry from L1 and the store; True if the store had it."""
        if not self.enabled:
            return False
        ns = self._ns.get(namespace) or self._namespace(namespace)
        self._l1.delete((namespace, key))
        if self.backend is None:
            return False
        try:
            return self.backend.delete(namespace, key)
        except Exception as exc:
            ns.stats.error("write", exc)
            return False

    async def adelete(self, namespace: str, key: str) -> bool:
        """``delete`` on an event loop."""
        if not self.enabled or self._inline or self.backend is None:
            return self.delete(namespace, key)
        ns = self._ns.get(namespace) or await self._anamespace(namespace)
        self._l1.delete((namespace, key))
        try:
            return await self.backend.adelete(namespace, key)
        except Exception as exc:
            ns.stats.error("write", exc)
            return False

    def get_many(self, namespace: str, keys: Iterable[str]) -> dict[str, Any]:
        """Values of the keys that hit (one store round trip for the L1 misses)."""
        if not self.enabled:
            return {}
        ns = self._ns.get(namespace) or self._namespace(namespace)
        now = _time()
        if now >= self._next_gen_check:
            self._check_generations(now)
        out, rest = self._tiers.many_l1(ns, keys, now)
        if rest and self.backend is not None:
            gen = ns.gen
            try:
                found = self.backend.get_many(namespace, rest)
            except Exception as exc:
                ns.stats.error("read", exc)
                found = {}
            self._tiers.many_accept(ns, rest, found, out, gen)
        elif rest:
            for _ in rest:
                ns.stats.miss()
        return out

    async def aget_many(self, namespace: str, keys: Iterable[str]) -> dict[str, Any]:
        """``get_many`` on an event loop."""
        if not self.enabled or self._inline or self.backend is None:
            return self.get_many(namespace, keys)
        ns = self._ns.get(namespace) or await self._anamespace(namespace)
        now = _time()
        if now >= self._next_gen_check:
            await self._acheck_generations(now)
        out, rest = self._tiers.many_l1(ns, keys, now)
        if rest:
            gen = ns.gen
            try:
                found = await self.backend.aget_many(namespace, rest)
            except Exception as exc:
                ns.stats.error("read", exc)
                found = {}
            self._tiers.many_accept(ns, rest, found, out, gen)
        return out

    def set_many(self, namespace: str, mapping: Mapping[str, Any], ttl: float | str | None = None) -> None:
        """Store many values in one transaction / round trip."""
        ttl = parse_ttl(ttl)
        if not self.enabled:
            return
        ns = self._ns.get(namespace) or self._namespace(namespace)
        items = self._tiers.prepare_many(ns, mapping, ttl)
        if items and self.backend is not None:
            try:
                self.backend.set_many(namespace, items)
            except Exception as exc:
                ns.stats.error("write", exc)

    async def aset_many(
        self, namespace: str, mapping: Mapping[str, Any], ttl: float | str | None = None
    ) -> None:
        """``set_many`` on an event loop."""
        ttl = parse_ttl(ttl)
        if not self.enabled or self._inline or self.backend is None:
            self.set_many(namespace, mapping, ttl)
            return
        ns = self._ns.get(namespace) or await self._anamespace(namespace)
        items = self._tiers.prepare_many(ns, mapping, ttl)
        if items:
            try:
                await self.backend.aset_many(namespace, items)
            except Exception as exc:
                ns.stats.error("write", exc)

    def invalidate(self, namespace: str) -> None:
        """Drop every entry of ``namespace`` in O(1) (generation bump), in this and every other process."""
        if not self.enabled:
            return
        ns = self._ns.get(namespace) or self._namespace(namespace)
        if self.backend is not None:
            try:
                ns.gen = self.backend.invalidate(namespace)
            except Exception as exc:
                ns.stats.error("write", exc)
                ns.gen += 1
        else:
            ns.gen += 1
        self._l1.clear(namespace)

    async def ainvalidate(self, namespace: str) -> None:
        """``invalidate`` on an event loop."""
        if not self.enabled or self._inline or self.backend is None:
            self.invalidate(namespace)
            return
        ns = self._ns.get(namespace) or await self._anamespace(namespace)
        try:
            ns.gen = await self.backend.ainvalidate(namespace)
        except Exception as exc:
            ns.stats.error("write", exc)
            ns.gen += 1
        self._l1.clear(namespace)

    def clear(self, namespace: str | None = None) -> int:
        """Delete entries for real (all, or one namespace); returns how many the store removed."""
        self._l1.clear(namespace)
        if self.backend is None:
            return 0
        return self.backend.clear(namespace)

    # ------------------------------------------------------------------ single-flight
    def get_or_compute(
        self, namespace: str, key: str, compute: Callable[[], T], ttl: float | str | None = None
    ) -> T:
        """The cached value, or ``compute()``'s result stored and returned; one computation per key at a time
        across threads (and across processes sharing the store, through a lease). A malformed ``ttl``
        raises ``ValueError`` before ``compute`` runs."""
        ttl = parse_ttl(ttl)
        if not self.enabled:
            return compute()
        ns = self._ns.get(namespace) or self._namespace(namespace)
        v = self._lookup(ns, key)
        if v is not MISSING:
            return v  # type: ignore[no-any-return]
        fk = (namespace, key)
        while True:
            flight, leader = self._sf.join(fk)
            if leader:
                break
            flight.done.wait()
            if not flight.retry:
                return self._follow(ns, flight, flight.exc is None)  # type: ignore[no-any-return]
        leased = False
        try:
            v = self._tiers.reread(ns, key)  # another process may have just written it
            if v is MISSING and self._leases is not None:
                leased, v = self._leases.take_or_wait(ns, key, lambda: self._tiers.reread(ns, key))
            if v is MISSING:
                # Counted here, not before the re-reads above: one that finds the entry counts a hit
                # (in _accept), and a call must count once (a miss then a hit was 80,002 of 80,000).
                ns.stats.miss()
                t0 = _perf()
                v = compute()
                self.set(namespace, key, v, ttl, cost=_perf() - t0)
        except BaseException as exc:
            self._sf.finish(fk, flight, None, exc)
            raise
        finally:
            if leased:
                assert self._leases is not None
                self._leases.release(ns, key)
        self._sf.finish(fk, flight, self._tiers.shared(ns, key, v), None)
        return v  # type: ignore[no-any-return]

    async def aget_or_compute(
        self,
        namespace: str,
        key: str,
        compute: Callable[[], Awaitable[T] | T],
        ttl: float | str | None = None,
    ) -> T:
        """Async ``get_or_compute``; ``compute`` may return a value or an awaitable (the leader awaits it)."""
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
            if not flight.retry:
                return self._follow(ns, flight, True)  # type: ignore[no-any-return]
        leased = False
        try:
            v = await self._tiers.areread(ns, key)
            if v is MISSING and self._leases is not None:
                leased, v = await self._leases.atake_or_wait(ns, key, lambda: self._tiers.areread(ns, key))
            if v is MISSING:
                ns.stats.miss()  # counted once per call: see get_or_compute
                t0 = _perf()
                r = compute()
                v = await r if inspect.isawaitable(r) else r
                await self.aset(namespace, key, v, ttl, cost=_perf() - t0)
        except BaseException as exc:
            self._sf.finish(fk, flight, None, exc)
            raise
        finally:
            if leased:
                assert self._leases is not None
                await self._leases.arelease(ns, key)
        self._sf.finish(fk, flight, self._tiers.shared(ns, key, v), None)
        return v  # type: ignore[no-any-return]

    @staticmethod
    def _follow(ns: Namespace, flight: Flight, ok: bool) -> Any:
        """A follower's answer once the leader finished: its own copy of the result, or the leader's
        exception. A follower handed the exception got nothing from the cache: a miss, not a hit."""
        ns.stats.hit(0.0) if ok else ns.stats.miss()
        stored, how = flight.wait()  # the leader's result, as a form each follower copies
        return stored if how is None else how(stored)

    # ------------------------------------------------------------------ stats and lifecycle
    def record_hit(self, namespace: str, cost: float = 0.0) -> None:
        """Count a hit answered outside ``get`` for this namespace (e.g. from a caller's write-behind queue of
        entries not yet stored), saving ``cost`` compute seconds, exactly as ``get`` counts one."""
        if not self.enabled:
            return
        ns = self._ns.get(namespace) or self._namespace(namespace)
        count = ns.count_hit
        if count is not None:
            count(cost)

    def namespace_generation(self, namespace: str) -> int:
        """The namespace's generation as this process knows it (``invalidate`` moves it on)."""
        return self._namespace(namespace).gen

    def namespace_stats(self, namespace: str) -> dict[str, Any]:
        """In-memory counters of one namespace (hits, misses, hit_rate, errors, uncacheable, saved)."""
        return self._namespace(namespace).stats.snapshot()

    def namespace_counters(self) -> dict[str, NamespaceStats]:
        """The live counters of every namespace used so far, by name (reporting and the fleet pusher)."""
        return {name: ns.stats for name, ns in list(self._ns.items())}

    def count_uncacheable(self, namespace: str) -> None:
        (self._ns.get(namespace) or self._namespace(namespace)).stats.mark_uncacheable()

    def get_stats(self) -> dict[str, Any]:
        """JSON-ready stats: ``enabled, backend, total_entries, total_bytes, by_type {namespace: entries}``,
        totals of hits / misses / hit_rate / errors, and ``namespaces {name: {...}}`` with per-namespace
        hits, misses, hit_rate, errors, uncacheable, entries, bytes and compute_seconds_saved; ``fleet``:
        every process's counts from the store (see ``infra.cache.report``)."""
        return self._report.stats(self)

    def push_metrics(self) -> None:
        """Push pending counts, evictions and the store's entries and bytes per namespace into the metrics
        registry; the registry calls this before every read (a collect hook), so /metrics and
        ``get_metrics().get_stats()`` are current even while no cache call runs."""
        if self._export and not self._closed:
            self._report.push(self)

    def close(self) -> None:
        """Flush stats and close the backend; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._export:
            for ns in list(self._ns.values()):
                ns.stats.flush()
            fleet_stats.close(self)
        if self.backend is not None:
            with contextlib.suppress(Exception):
                self.backend.close()

    async def aclose(self) -> None:
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

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _owner(c: Cache) -> str:
    """This cache's name as a lease holder: host, pid (stores check it is alive) and the object."""
    return f"{socket.gethostname()}:{os.getpid()}:{id(c):x}"


def _after_fork(ref: weakref.ref[Cache]) -> None:
    c = ref()
    if c is not None:
        c._ns_lock = threading.Lock()
        c._l1.after_fork()
        if c._leases is not None:  # the child is another lease holder: never the parent
            c._leases.owner = _owner(c)


_PROCESS_NAMES = ("get_cache", "set_cache", "reset_cache")


def __getattr__(name: str) -> Any:
    # The process-wide cache lives in infra.cache.process; these names stay importable from here.
    if name in _PROCESS_NAMES:
        from infra.cache import process

        return getattr(process, name)
    raise AttributeError(f"module 'infra.cache.core' has no attribute {name!r}")
