"""``Cache``: L1 (in-process LRU) in front of a ``CacheBackend`` (SQLite by default), with per-namespace
TTL and codecs, single-flight, stats, and fail-open error handling; ``get_cache()`` is the process-wide one.

Fail-open: every backend, codec or metrics failure is caught here, counted (``errors`` by reason) and
logged once per namespace and reason; ``get`` then misses, ``set`` then stores nothing, and
``get_or_compute`` returns exactly what the computation returned or raises exactly what it raised.

``Cache`` holds its collaborators, each a concept of its own module: the L1 and its probe (``l1``), the
namespaces' codecs, TTLs and counters (``namespaces``), an entry's way between store and L1 (``tiers``),
which store to use (``store_choice``), what this process has seen of changes made elsewhere
(``changes``), the store's per-key leases (``leases``), in-process single-flight (``singleflight``) and
what it reports (``report``). The process-wide cache (``get_cache``) lives in ``infra.cache.process``.

Async twins (``aget``, ``aset``, ``aget_or_compute`` ...) take no thread hop: L1 hits are plain dict
lookups and the SQLite backend answers inline in microseconds (``_inline``: they call the sync path).
Network backends (issue 8) override the backend's async methods and are awaited.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import logging
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar

from infra.cache import fleet_stats
from infra.cache._missing import MISSING
from infra.cache.backends.base import GENERATION_POLL_INTERVAL, CacheBackend
from infra.cache.changes import ChangeTracker, poll_intervals
from infra.cache.codecs import DecodeError, Signer
from infra.cache.l1 import L1Cache
from infra.cache.leases import Leases, holder_name
from infra.cache.namespaces import Namespace, build_namespace
from infra.cache.report import CacheReport
from infra.cache.singleflight import Flight, SingleFlight
from infra.cache.stats import NamespaceStats
from infra.cache.store_choice import make_backend, open_backend
from infra.cache.tiers import Tiers
from infra.cache.ttl import parse_ttl
from infra.config._switch import metrics_enabled
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
    overrides the one the settings name (tests, custom stores); ``export_metrics`` turns the registry
    export off (in-memory stats stay), as ``metrics.enabled: false`` does for every cache; ``stats=False``
    counts nothing (the benchmark's baseline: counting must cost a hit no more than 5%). ``poll_interval``,
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
        poll_interval, push_poll_interval = poll_intervals(s.sync_interval, poll_interval, push_poll_interval)
        self.settings = s
        self.enabled = s.enabled
        self._fleet = export_metrics and stats  # the store's counters: the cache's own, kept with metrics off
        self._export = self._fleet and metrics_enabled()  # the registry export (infra.config._switch)
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
        self._report = CacheReport(export=self._export, fleet=self._fleet)
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
            self._leases = Leases(self.backend, holder_name(self), s.lease_timeout, inline=self._inline)
            self._changes.subscribe(self.backend)
        if self._export:
            from infra.cache.stats import track_for_collect

            track_for_collect(self)  # the registry folds our counts before every read (push_metrics)
        if self._fleet:
            fleet_stats.track(self)  # the store keeps every process's totals (infra.cache.fleet_stats)
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
            if ns is None:
                ns = self._ns[name] = build_namespace(
                    name,
                    self.settings,
                    self.backend if fetch else None,
                    signer=self._signer,
                    shared=self.backend is not None and self.backend.shared,  # (only ever with a signer)
                    export=self._export,
                    count=self._count,
                )
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
        self._flush()
        if self._export:
            self._report.export_evictions(self._l1, self.backend)
        return None if self.backend is None else self._changes.due(self.backend, now)

    def _flush(self) -> None:
        """Pending counts into the registry (exporting), else folded: a tick's worth at most (see stats)."""
        for ns in list(self._ns.values()):
            if self._export:
                ns.stats.flush()
            else:
                ns.stats.fold()

    def _check_generations(self, now: float) -> None:
        """The sync tick: export metrics; poll the store's ``versions()`` when due."""
        seq = self._tick(now)
        if seq is not None and self.backend is not None:
            self._changes.poll(self.backend, seq)

    async def _acheck_generations(self, now: float) -> None:
        """The async tick: as ``_check_generations``, awaiting ``aversions()`` (no blocking round trip)."""
        seq = self._tick(now)
        if seq is not None and self.backend is not None:
            await self._changes.apoll(self.backend, seq)

    # ------------------------------------------------------------------ lookups (shared core)
    def l1_hit(self, namespace: str, key: str) -> object:
        """The value if it is a live L1 entry (counted as a hit), else ``MISSING`` and nothing counted.

        The shortest path the cache has: ``@cached`` tries it before ``get_or_compute``. Anything
        unusual (generation poll due, unknown namespace, expired) is left to the full path.
        """
        # L1Cache.probe written out (see infra.cache.l1; tests/cache/test_l1.py checks they agree)
        e = self._l1.entries.get((namespace, key))
        if e is None:
            return MISSING
        ns, now, exp = self._ns.get(namespace), _time(), e.expires
        if ns is None or now >= self._next_gen_check or e.gen != ns.gen or (exp is not None and exp <= now):
            return MISSING
        try:  # noqa: SIM105 - contextlib.suppress costs ~0.3 us here, half an L1 hit
            self._l1.entries.move_to_end((namespace, key))
        except KeyError:  # evicted by another thread meanwhile: still a valid answer
            pass
        count = ns.count_hit  # counting inlined: a method call here costs ~15% of an L1 hit
        if count is not None:
            count(e.cost)
        thaw = e.thaw  # a copy of its own unless the value is immutable (infra.cache.values)
        return e.stored if thaw is None else thaw(e.stored)

    def _lookup(self, ns: Namespace, key: str) -> Any:
        now = _time()
        if now >= self._next_gen_check:
            self._check_generations(now)
        gen, tiers = ns.gen, self._tiers  # (Tiers.lookup, one call less: the @cached L1-cold hit path)
        v = self._l1.probe((ns.name, key), gen, now, ns.stats.hit) if self._l1.entries else MISSING
        return v if v is not MISSING else tiers.accept(ns, key, tiers.l2_get(ns, key), gen)

    async def _alookup(self, ns: Namespace, key: str) -> Any:
        now = _time()
        if now >= self._next_gen_check:
            await self._acheck_generations(now)
        return await self._tiers.alookup(ns, key, now)

    # ------------------------------------------------------------------ the API, sync and async
    def get(self, namespace: str, key: str, default: object = MISSING) -> object:
        """The cached value, or ``default`` (``MISSING`` unless given) on a miss or any cache failure."""
        if not self.enabled:
            return default
        ns = self._ns.get(namespace) or self._namespace(namespace)
        now = _time()
        if now >= self._next_gen_check:
            self._check_generations(now)
        gen = ns.gen  # read before L2: see Tiers.accept
        data = (
            self._l1.entries
        )  # _lookup and L1Cache.probe written out: the hottest path (see infra.cache.l1)
        if data:  # (an L1 that is off or empty costs the L2 path no lookup)
            k = (namespace, key)
            e = data.get(k)
            if e is not None and e.gen == gen and (e.expires is None or e.expires > now):
                try:  # noqa: SIM105 - contextlib.suppress costs ~0.3 us here, a third of an L1 hit
                    data.move_to_end(k)
                except KeyError:  # evicted by another thread meanwhile: still a valid answer
                    pass
                count = ns.count_hit  # counting inlined: a method call here costs ~15% of an L1 hit
                if count is not None:
                    count(e.cost)
                thaw = e.thaw  # a copy of its own unless the value is immutable (infra.cache.values)
                return e.stored if thaw is None else thaw(e.stored)
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
                if self._l1.max_items > 0:
                    self._l1.set((namespace, key), ns.l1_entry(v, payload, codec, expires, gen, cost))
                count = ns.count_hit
                if count is not None:
                    count(cost)
                return v
        ns.stats.miss()
        return default

    async def aget(self, namespace: str, key: str, default: object = MISSING) -> object:
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
        self, namespace: str, key: str, value: object, ttl: float | str | None = None, *, cost: float = 0.0
    ) -> None:
        """Store ``value`` (``ttl`` seconds or ``"1h"``-style; None: the namespace's TTL; 0: never expires).
        Cache failures never raise; a malformed ``ttl`` is a ``ValueError``."""
        ttl = parse_ttl(ttl)
        if self.enabled:
            self._tiers.write(self._ns.get(namespace) or self._namespace(namespace), key, value, ttl, cost)

    async def aset(
        self, namespace: str, key: str, value: object, ttl: float | str | None = None, *, cost: float = 0.0
    ) -> None:
        """``set`` on an event loop."""
        ttl = parse_ttl(ttl)
        if not self.enabled or self._inline:
            self.set(namespace, key, value, ttl, cost=cost)
        else:
            ns = self._ns.get(namespace) or await self._anamespace(namespace)
            await self._tiers.awrite(ns, key, value, ttl, cost)

    def delete(self, namespace: str, key: str) -> bool:
        """Remove one entry from L1 and the store; True if the store had it."""
        return self.enabled and self._tiers.delete(self._ns.get(namespace) or self._namespace(namespace), key)

    async def adelete(self, namespace: str, key: str) -> bool:
        """``delete`` on an event loop."""
        if not self.enabled or self._inline or self.backend is None:
            return self.delete(namespace, key)
        return await self._tiers.adelete(self._ns.get(namespace) or await self._anamespace(namespace), key)

    def get_many(self, namespace: str, keys: Iterable[str]) -> dict[str, object]:
        """Values of the keys that hit (one store round trip for the L1 misses)."""
        if not self.enabled:
            return {}
        ns = self._ns.get(namespace) or self._namespace(namespace)
        now = _time()
        if now >= self._next_gen_check:
            self._check_generations(now)
        return self._tiers.read_many(ns, keys, now)

    async def aget_many(self, namespace: str, keys: Iterable[str]) -> dict[str, object]:
        """``get_many`` on an event loop."""
        if not self.enabled or self._inline or self.backend is None:
            return self.get_many(namespace, keys)
        ns = self._ns.get(namespace) or await self._anamespace(namespace)
        now = _time()
        if now >= self._next_gen_check:
            await self._acheck_generations(now)
        return await self._tiers.aread_many(ns, keys, now)

    def set_many(self, namespace: str, mapping: Mapping[str, object], ttl: float | str | None = None) -> None:
        """Store many values in one transaction / round trip."""
        ttl = parse_ttl(ttl)
        if self.enabled:
            self._tiers.write_many(self._ns.get(namespace) or self._namespace(namespace), mapping, ttl)

    async def aset_many(
        self, namespace: str, mapping: Mapping[str, object], ttl: float | str | None = None
    ) -> None:
        """``set_many`` on an event loop."""
        ttl = parse_ttl(ttl)
        if not self.enabled or self._inline or self.backend is None:
            self.set_many(namespace, mapping, ttl)
        else:
            ns = self._ns.get(namespace) or await self._anamespace(namespace)
            await self._tiers.awrite_many(ns, mapping, ttl)

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
        if ttl is not None:
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

    def namespace_stats(self, namespace: str) -> dict[str, object]:
        """In-memory counters of one namespace (hits, misses, hit_rate, errors, uncacheable, saved)."""
        return self._namespace(namespace).stats.snapshot()

    def namespace_counters(self) -> dict[str, NamespaceStats]:
        """The live counters of every namespace used so far, by name (reporting and the fleet pusher)."""
        return {name: ns.stats for name, ns in list(self._ns.items())}

    def count_uncacheable(self, namespace: str) -> None:
        (self._ns.get(namespace) or self._namespace(namespace)).stats.mark_uncacheable()

    def get_stats(self) -> dict[str, object]:
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
        self._flush()
        if self._fleet:
            fleet_stats.close(self)
        if self.backend is not None:
            with contextlib.suppress(Exception):
                self.backend.close()

    async def aclose(self) -> None:
        """Close what belongs to the calling event loop (a network backend's connections opened on it) and
        flush the stats; the cache itself stays open for other loops and for sync code (issue 14: ``await
        get_cache().aclose()`` at the end of one ``asyncio.run`` used to turn the process-wide cache off).
        ``close()`` closes the cache for good."""
        self._flush()
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


def _after_fork(ref: weakref.ref[Cache]) -> None:
    c = ref()
    if c is not None:
        c._ns_lock = threading.Lock()
        c._l1.after_fork()
        if c._leases is not None:  # the child is another lease holder: never the parent
            c._leases.owner = holder_name(c)
