"""``Cache``: L1 (in-process LRU) in front of a ``CacheBackend`` (SQLite by default), with per-namespace
TTL and codecs, single-flight, stats, and fail-open error handling; ``get_cache()`` is the process-wide one.

Fail-open: every backend, codec or metrics failure is caught here, counted (``errors`` by reason) and
logged once per namespace and reason; ``get`` then misses, ``set`` then stores nothing, and
``get_or_compute`` returns exactly what the computation returned or raises exactly what it raised.

Async twins (``aget``, ``aset``, ``aget_or_compute`` ...; written in ``infra.cache._async_api``) take no
thread hop: L1 hits are plain dict lookups and the SQLite backend answers inline in microseconds. Network
backends (issue 8) override the backend's async methods and are awaited. The process-wide cache
(``get_cache``) lives in ``infra.cache.process`` and stays importable from here.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from infra.cache import _async_api, _generations, fleet_stats
from infra.cache._missing import MISSING
from infra.cache.backend import GENERATION_POLL_INTERVAL, PUSH_POLL_INTERVAL, CacheBackend, StoredEntry
from infra.cache.codecs import Codec, DecodeError, EncodeError, Signer
from infra.cache.l1 import L1Cache, L1Entry
from infra.cache.settings import CacheSettings, parse_ttl
from infra.cache.singleflight import LEASE_POLL_MAX, LEASE_POLL_MIN, SingleFlight
from infra.cache.stats import NamespaceStats, NullStats
from infra.cache.values import Thaw, freeze_encoded, freeze_plain

#: TTL jitter draws from its own generator: the layer must not advance the caller's ``random`` sequence.
_JITTER = random.Random()

__all__ = ["Cache", "make_backend"]

log = logging.getLogger("infra.cache")
T = TypeVar("T")

_time = time.time
_perf = time.perf_counter
_DEFAULT_BACKEND: Any = object()  # "build the backend the settings name" (None means: L1 only)


def make_backend(settings: CacheSettings) -> CacheBackend | None:
    """The L2 backend the settings name (None: L1 only). Network backends load lazily (issue 8)."""
    if settings.backend == "memory":
        return None
    if settings.backend == "sqlite":
        from infra.cache.sqlite_store import SQLiteBackend

        return SQLiteBackend(
            settings.path,
            max_bytes=settings.max_bytes,
            namespace_max_bytes={k: v.max_bytes for k, v in settings.namespaces.items()},
            budget=settings.store_budget,
        )
    import importlib

    try:
        mod = importlib.import_module(f"infra.cache.backends.{settings.backend}")
    except ImportError as exc:
        raise ValueError(f"cache backend {settings.backend!r} is not available: {exc}") from exc
    factory: Callable[[CacheSettings], CacheBackend] = mod.from_settings
    return factory(settings)


class _Namespace:
    """Runtime state of one namespace: its codec, TTL, generation and stats."""

    __slots__ = ("changes", "codec", "count_hit", "gen", "jitter", "name", "plain_text", "stats", "ttl")

    def __init__(
        self,
        name: str,
        codec: Codec,
        ttl: float,
        jitter: float,
        gen: int,
        export: bool,
        count: bool,
        changes: int = 0,
    ) -> None:
        self.name = name
        self.codec = codec
        self.ttl = ttl
        self.jitter = jitter
        self.gen = gen
        self.changes = changes  # the store's count of deletes / clears / overwrites, as last polled
        self.stats = NamespaceStats(name, export=export) if count else NullStats(name, export=False)
        # a hit, counted: the stats' pending list's bound append (the list is never replaced), or None
        self.count_hit = self.stats.hit_costs.append if count else None
        self.plain_text = not codec.signs  # STR payloads are the raw UTF-8 text: decode without the codec


class Cache:
    """The cache. Build one with ``Cache(CacheSettings(...))`` or use ``get_cache()``.

    ``backend`` overrides the one the settings name (tests, custom stores); ``export_metrics`` turns the
    registry export off (in-memory stats stay); ``stats=False`` counts nothing at all (the baseline the
    benchmark compares against: counting must cost a hit no more than 5%). ``poll_interval`` and
    ``push_poll_interval``: seconds between polls of the backend's versions (generations and change counts)
    without and with a connected push listener (see ``infra.cache._generations``); by default derived from
    ``settings.sync_interval``, the longest another process's change may go unseen by this L1.
    """

    def __init__(
        self,
        settings: CacheSettings | None = None,
        *,
        backend: Any = _DEFAULT_BACKEND,
        export_metrics: bool = True,
        stats: bool = True,
        poll_interval: float | None = None,
        push_poll_interval: float | None = None,
    ) -> None:
        s = settings if settings is not None else CacheSettings()
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
        self._signer = Signer(s.signing_key) if s.signing_key else None
        self._ns: dict[str, _Namespace] = {}
        self._ns_lock = threading.Lock()
        self._sf = SingleFlight()
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._next_gen_check = 0.0
        self._tick_interval = min(GENERATION_POLL_INTERVAL, poll_interval)
        self._poll_interval = poll_interval
        self._push_poll_interval = push_poll_interval
        self._last_poll = float("-inf")
        self._push_seq = 0
        self._push_epoch: int | None = None
        self._closed = False
        self._backend_error: str | None = None
        self._lookup_tick = 0
        self._evictions_exported: dict[str, int] = {}
        self.backend: CacheBackend | None = None
        if self.enabled:
            if backend is _DEFAULT_BACKEND:
                try:
                    self.backend = make_backend(s)
                except Exception as exc:
                    self._backend_error = str(exc)
                    log.error(
                        "cache backend %r unavailable (%s); running with the in-process L1 only",
                        s.backend,
                        exc,
                    )
            else:
                self.backend = backend
        if self.backend is not None and self.backend.shared and self._signer is None:
            # Issue 17 item 11: other clients can write a shared store, so its rows are trusted only when
            # signed; without a key nothing can be verified (nor signed): the store is not used at all.
            self._backend_error = (
                f"cache backend {self.backend.name!r} is shared but {s.signing_key_env} is not set: "
                "its rows can't be verified, so it is not used (set the key)"
            )
            log.error("%s; running with the in-process L1 only", self._backend_error)
            if backend is _DEFAULT_BACKEND:
                with contextlib.suppress(Exception):
                    self.backend.close()
            self.backend = None
        self._inline = self.backend is not None and type(self.backend).aget is CacheBackend.aget
        # SQLite's row-tuple fast path for get() (no StoredEntry on the hottest path); others: backend.get
        self._get_row: Callable[..., Any] | None = getattr(self.backend, "get_row", None)
        self._register_push()
        self._gauges_at = float("-inf")
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

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"<Cache {state} backend={self.backend!r} l1={len(self._l1)} items>"

    # ------------------------------------------------------------------ namespaces
    def _namespace(self, name: str, *, fetch: bool = True) -> _Namespace:
        """The namespace's state, created on first use with the store's generation (``fetch=False``: 0
        for now, and the next tick polls; the async paths use that, see ``_async_api._anamespace``)."""
        ns = self._ns.get(name)
        if ns is not None:
            return ns
        with self._ns_lock:
            ns = self._ns.get(name)
            if ns is not None:
                return ns
            s = self.settings
            nss = s.namespace(name)
            shared = self.backend is not None and self.backend.shared  # (only ever with a signer)
            codec = Codec(
                signer=self._signer,
                pickle=nss.codec == "pickle",
                sign=bool(shared and self._signer is not None),
                compress_threshold=s.compress_threshold,
                max_decoded=nss.max_bytes or s.max_bytes or None,  # the store's own limit bounds inflation
                trusted_modules=s.trusted_modules,
            )
            if nss.codec == "pickle" and self._signer is None:
                log.warning(
                    "cache namespace %r opts into pickle but %s is unset: only safe-codec values are cached",
                    name,
                    s.signing_key_env,
                )
            gen = changes = 0
            failure: Exception | None = None
            if self.backend is not None and fetch:
                try:
                    gen, changes = self.backend.versions().get(name, (0, 0))
                except Exception as exc:
                    failure = exc
            ns = _Namespace(
                name, codec, s.ttl_for(name), s.ttl_jitter, gen, self._export, self._count, changes
            )
            self._ns[name] = ns
        if failure is not None:
            ns.stats.error("read", failure)
        return ns

    def _expires(self, ns: _Namespace, ttl: float | None, now: float) -> float | None:
        t = ns.ttl if ttl is None else ttl
        if t <= 0 or t == float("inf"):
            return None  # a TTL of 0 (or inf) means "never expires"
        if ns.jitter:
            t *= 1.0 + _JITTER.random() * ns.jitter
        return now + t

    # ------------------------------------------------------------------ lookups (shared core)
    def _export_evictions(self) -> None:
        """Push L1 and store eviction counts to ``infra_cache_evictions_total{tier}`` (deltas)."""
        try:
            from infra.cache.stats import _Exporter

            fam = _Exporter.families()["evictions"]
            for tier, now_count in (
                ("l1", self._l1.evictions),
                ("l2", int(getattr(self.backend, "evictions", 0) or 0)),
            ):
                delta = now_count - self._evictions_exported.get(tier, 0)
                if delta > 0:
                    fam.labels(tier=tier).inc(delta)
                    self._evictions_exported[tier] = now_count
        except Exception:
            pass

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

    def _l1_get(self, ns: _Namespace, key: str, now: float) -> Any:
        return self._l1.probe((ns.name, key), ns.gen, now, ns.stats.hit)

    @staticmethod
    def _l1_form(ns: _Namespace, value: Any, payload: bytes, codec: int) -> tuple[Any, Thaw]:
        """What the L1 keeps for ``value`` (stored as ``payload``): see ``infra.cache.values``."""
        if type(value) is str:
            return value, None
        return freeze_encoded(value, codec & 0x3F, payload, functools.partial(ns.codec.decode, codec=codec))

    def _shared(self, ns: _Namespace, key: str, value: Any) -> tuple[Any, Thaw]:
        """The leader's result in a form each single-flight follower thaws into its own copy: the L1 entry
        just written when there is one, else a copy made before the leader hands ``value`` out."""
        e = self._l1.peek((ns.name, key), ns.gen, float("-inf"))
        if e is not None:
            return e.stored, e.thaw
        return freeze_plain(value)

    def _accept(self, ns: _Namespace, key: str, se: StoredEntry | None, gen: int) -> Any:
        """Decode an L2 entry, fill L1, count the hit (or the decode error as a miss).

        ``gen`` is the namespace's generation read *before* the L2 lookup: should an invalidation be
        pushed while the lookup runs, the entry lands in L1 under the old generation and is never served.
        """
        if se is None:
            return MISSING
        try:
            value = ns.codec.decode(se.payload, se.codec)
        except DecodeError as exc:
            ns.stats.error("decode", exc)
            return MISSING
        if self._l1.max_items > 0:
            stored, how = self._l1_form(ns, value, se.payload, se.codec)
            self._l1.set((ns.name, key), L1Entry(stored, se.expires_at, gen, se.cost, len(se.payload), how))
        ns.stats.hit(se.cost)
        return value

    def _l2_get(self, ns: _Namespace, key: str) -> StoredEntry | None:
        b = self.backend
        if b is None:
            return None
        self._lookup_tick += 1
        sample = not self._lookup_tick & 15
        t0 = _perf() if sample else 0.0
        try:
            se = b.get(ns.name, key)
        except Exception as exc:
            ns.stats.error("read", exc)
            return None
        if sample and self._export:
            _observe_lookup(ns.name, _perf() - t0)
        return se

    def _lookup(self, ns: _Namespace, key: str) -> Any:
        now = _time()
        if now >= self._next_gen_check:
            self._check_generations(now)
        v = self._l1_get(ns, key, now)
        if v is not MISSING:
            return v
        gen = ns.gen
        return self._accept(ns, key, self._l2_get(ns, key), gen)

    def _encode(self, ns: _Namespace, value: Any) -> tuple[bytes, int] | None:
        try:
            return ns.codec.encode(value)
        except EncodeError as exc:
            ns.stats.mark_uncacheable()
            ns.stats.error("encode", exc)
            return None
        except Exception as exc:
            ns.stats.error("encode", exc)
            return None

    def _prepare(
        self, ns: _Namespace, key: str, value: Any, ttl: float | None, cost: float
    ) -> StoredEntry | None:
        enc = self._encode(ns, value)
        if enc is None:
            return None
        now = _time()
        se = StoredEntry(enc[0], enc[1], self._expires(ns, ttl, now), cost)
        if self._l1.max_items > 0:
            stored, how = self._l1_form(ns, value, enc[0], enc[1])
            self._l1.set((ns.name, key), L1Entry(stored, se.expires_at, ns.gen, cost, len(enc[0]), how))
        return se

    # ------------------------------------------------------------------ sync API
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
            try:
                # Plain text (codec STR, unsigned namespace) decoded inline: the common LLM answer.
                if row[1] == 1 and ns.plain_text:
                    v = row[0].decode("utf-8", "surrogatepass")
                else:
                    v = ns.codec.decode(row[0], row[1])
            except (DecodeError, UnicodeDecodeError) as exc:
                ns.stats.error("decode", exc)
            else:
                if self._l1.max_items > 0:
                    stored, how = (v, None) if type(v) is str else self._l1_form(ns, v, row[0], row[1])
                    self._l1.set((namespace, key), L1Entry(stored, row[2], gen, row[3], len(row[0]), how))
                count = ns.count_hit
                if count is not None:
                    count(row[3])
                return v
        ns.stats.miss()
        return default

    def set(
        self, namespace: str, key: str, value: Any, ttl: float | str | None = None, *, cost: float = 0.0
    ) -> None:
        """Store ``value`` (``ttl`` seconds or ``"1h"``-style; None: the namespace's TTL; 0: never expires).
        Cache failures never raise; a malformed ``ttl`` is a ``ValueError``."""
        if ttl is not None and not (type(ttl) is float and ttl >= 0.0):
            ttl = parse_ttl(ttl)
        if not self.enabled:
            return
        ns = self._ns.get(namespace) or self._namespace(namespace)
        se = self._prepare(ns, key, value, ttl, cost)
        b = self.backend
        if se is None or b is None:
            return
        try:
            b.set(namespace, key, se)
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

    def get_many(self, namespace: str, keys: Iterable[str]) -> dict[str, Any]:
        """Values of the keys that hit (one store round trip for the L1 misses)."""
        if not self.enabled:
            return {}
        ns = self._ns.get(namespace) or self._namespace(namespace)
        out, rest = self._many_l1(ns, keys)
        if rest and self.backend is not None:
            gen = ns.gen
            try:
                found = self.backend.get_many(namespace, rest)
            except Exception as exc:
                ns.stats.error("read", exc)
                found = {}
            self._many_accept(ns, rest, found, out, gen)
        elif rest:
            for _ in rest:
                ns.stats.miss()
        return out

    def _many_l1(self, ns: _Namespace, keys: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
        now = _time()
        if now >= self._next_gen_check:
            self._check_generations(now)
        out: dict[str, Any] = {}
        rest: list[str] = []
        for k in keys:
            v = self._l1_get(ns, k, now)
            if v is MISSING:
                rest.append(k)
            else:
                out[k] = v
        return out, rest

    def _many_accept(
        self, ns: _Namespace, rest: list[str], found: Mapping[str, StoredEntry], out: dict[str, Any], gen: int
    ) -> None:
        for k in rest:
            v = self._accept(ns, k, found.get(k), gen)
            if v is MISSING:
                ns.stats.miss()
            else:
                out[k] = v

    def set_many(self, namespace: str, mapping: Mapping[str, Any], ttl: float | str | None = None) -> None:
        """Store many values in one transaction / round trip."""
        if ttl is not None and not (type(ttl) is float and ttl >= 0.0):
            ttl = parse_ttl(ttl)
        if not self.enabled:
            return
        ns = self._ns.get(namespace) or self._namespace(namespace)
        items = self._prepare_many(ns, mapping, ttl)
        if items and self.backend is not None:
            try:
                self.backend.set_many(namespace, items)
            except Exception as exc:
                ns.stats.error("write", exc)

    def _prepare_many(
        self, ns: _Namespace, mapping: Mapping[str, Any], ttl: float | None
    ) -> dict[str, StoredEntry]:
        items: dict[str, StoredEntry] = {}
        for k, v in mapping.items():
            se = self._prepare(ns, k, v, ttl, 0.0)
            if se is not None:
                items[k] = se
        return items

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
        if ttl is not None and not (type(ttl) is float and ttl >= 0.0):
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
            if flight.retry:
                continue
            # A follower handed the leader's exception got nothing from the cache: a miss, not a hit.
            ns.stats.hit(0.0) if flight.exc is None else ns.stats.miss()
            stored, how = flight.wait()  # the leader's result, as a form each follower copies
            return stored if how is None else how(stored)  # type: ignore[no-any-return]
        leased = False
        try:
            gen = ns.gen
            v = self._accept(ns, key, self._l2_get(ns, key), gen)  # another process may have just written it
            if v is MISSING and self.backend is not None:
                leased, v = self._lease_or_wait(ns, key)
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
                self._release(ns, key)
        self._sf.finish(fk, flight, self._shared(ns, key, v), None)
        return v  # type: ignore[no-any-return]

    def _lease_or_wait(self, ns: _Namespace, key: str) -> tuple[bool, Any]:
        """Take the cross-process lease, or wait (bounded by lease_timeout) for its holder's result."""
        b = self.backend
        assert b is not None
        deadline = _perf() + self.settings.lease_timeout
        delay = LEASE_POLL_MIN
        while True:
            try:
                got = b.acquire_lease(ns.name, key, self._owner, self.settings.lease_timeout)
            except Exception as exc:
                ns.stats.error("lease", exc)
                return False, MISSING
            if got:
                # A holder may have set and released between our last L2 miss and this acquire: read L2
                # once more, or we would compute a second time (seen in test_multihost under load).
                gen = ns.gen
                v = self._accept(ns, key, self._l2_get(ns, key), gen)
                if v is MISSING:
                    return True, MISSING
                self._release(ns, key)
                return False, v
            if _perf() >= deadline:
                return False, MISSING
            time.sleep(delay)
            delay = min(delay * 2, LEASE_POLL_MAX)
            gen = ns.gen
            v = self._accept(ns, key, self._l2_get(ns, key), gen)
            if v is not MISSING:
                return False, v

    def _release(self, ns: _Namespace, key: str) -> None:
        try:
            assert self.backend is not None
            self.backend.release_lease(ns.name, key, self._owner)
        except Exception as exc:
            ns.stats.error("lease", exc)

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

    def count_uncacheable(self, namespace: str) -> None:
        (self._ns.get(namespace) or self._namespace(namespace)).stats.mark_uncacheable()

    def get_stats(self) -> dict[str, Any]:
        """JSON-ready stats: ``enabled, backend, total_entries, total_bytes, by_type {namespace: entries}``,
        totals of hits / misses / hit_rate / errors, and ``namespaces {name: {...}}`` with per-namespace
        hits, misses, hit_rate, errors, uncacheable, entries, bytes and compute_seconds_saved."""
        out: dict[str, Any] = {
            "enabled": self.enabled,
            "backend": self.backend.name if self.backend is not None else "memory",
            "total_entries": 0,
            "total_bytes": 0,
            "by_type": {},
            "hits": 0,
            "misses": 0,
            "hit_rate": 0.0,
            "errors": 0,
            "compute_seconds_saved": 0.0,
            "l1": {"entries": len(self._l1), "bytes": self._l1.nbytes, "evictions": self._l1.evictions},
            "namespaces": {},
        }
        if self._backend_error:
            out["backend_error"] = self._backend_error
        if not self.enabled:
            return out
        if self._export:
            self._export_evictions()
        if self.backend is not None:
            out["l2_evictions"] = int(getattr(self.backend, "evictions", 0) or 0)
        by_ns: Mapping[str, tuple[int, int]] = {}
        if self.backend is not None:
            try:
                bs = self.backend.stats()
                by_ns = bs.by_namespace
                out["total_entries"], out["total_bytes"] = bs.entries, bs.bytes
                out["store"] = dict(bs.extra)
            except Exception as exc:
                out["backend_error"] = str(exc)
        names = sorted(set(by_ns) | set(self._ns))
        fam = None
        if self._export:
            with contextlib.suppress(Exception):
                from infra.cache.stats import _Exporter

                fam = _Exporter.families()
        for name in names:
            entries, nbytes = by_ns.get(name, (0, 0))
            snap: dict[str, Any] = {"entries": entries, "bytes": nbytes}
            ns = self._ns.get(name)
            if ns is not None:
                ns.stats.flush() if self._export else None
                snap.update(ns.stats.snapshot())
            else:
                snap.update(NamespaceStats(name, export=False).snapshot())
            out["by_type"][name] = entries
            out["namespaces"][name] = snap
            out["hits"] += snap["hits"]
            out["misses"] += snap["misses"]
            out["errors"] += snap["errors"]
            out["compute_seconds_saved"] += snap["compute_seconds_saved"]
            if fam is not None:
                with contextlib.suppress(Exception):
                    fam["entries"].labels(namespace=name).set(entries)
                    fam["bytes"].labels(namespace=name).set(nbytes)
        if self.backend is None and not by_ns:
            out["total_entries"] = len(self._l1)
            out["total_bytes"] = self._l1.nbytes
        total = out["hits"] + out["misses"]
        out["hit_rate"] = round(out["hits"] / total, 6) if total else 0.0
        out["compute_seconds_saved"] = round(out["compute_seconds_saved"], 6)
        self._add_fleet(out)
        return out

    def _add_fleet(self, out: dict[str, Any]) -> None:
        """``fleet``: every process's counts per namespace since the last ``cache stats --reset``, from the
        store (this process's pushed first); the figures above are this process's (issue 16)."""
        if not self._export or self.backend is None:
            return
        try:
            totals = fleet_stats.fleet_totals(self)
        except Exception as exc:
            out["fleet_error"] = str(exc)
            return
        if totals is not None:
            out["fleet"] = {name: c.to_dict() for name, c in sorted(totals.items())}

    def push_metrics(self) -> None:
        """Push pending counts, evictions and the store's entries and bytes per namespace into the metrics
        registry; the registry calls this before every read (a collect hook), so /metrics and
        ``get_metrics().get_stats()`` are current even while no cache call runs. The store is asked at most
        every 0.5 s, and never more than 1/20 of the time (a Redis store is counted by SCAN)."""
        if not self._export or self._closed:
            return
        for ns in list(self._ns.values()):
            ns.stats.flush()
        self._export_evictions()
        now = _perf()
        if self.backend is None or now < self._gauges_at:
            return
        from infra.cache.stats import _Exporter

        fam = _Exporter.families()
        try:
            by_ns = self.backend.stats().by_namespace
        except Exception:
            self._gauges_at = now + 5.0
            return  # counted by the calls that fail; a scrape must not fail for it
        finally:
            if self._gauges_at <= now:
                self._gauges_at = now + max(0.5, 20 * (_perf() - now))
        for name in sorted(set(by_ns) | set(self._ns)):
            entries, nbytes = by_ns.get(name, (0, 0))
            fam["entries"].labels(namespace=name).set(entries)
            fam["bytes"].labels(namespace=name).set(nbytes)

    def close(self) -> None:
        """Flush stats and close the backend; idempotent."""
        if self._closed:
            return
        self._closed = True
        for ns in list(self._ns.values()):
            if self._export:
                ns.stats.flush()
        if self._export:
            fleet_stats.close(self)
        if self.backend is not None:
            with contextlib.suppress(Exception):
                self.backend.close()

    # ------------------------------------------------------------------ generations (_generations)
    _register_push = _generations.register_push
    _push_invalidation = _generations.push_invalidation
    _push_change = _generations.push_change
    _check_generations = _generations.check_generations
    _acheck_generations = _generations.acheck_generations

    # ------------------------------------------------------------------ async twins (infra.cache._async_api)
    aget = _async_api.aget
    _anamespace = _async_api._anamespace
    _alookup = _async_api._alookup
    _al2_get = _async_api._al2_get
    aset = _async_api.aset
    adelete = _async_api.adelete
    aget_many = _async_api.aget_many
    aset_many = _async_api.aset_many
    ainvalidate = _async_api.ainvalidate
    aget_or_compute = _async_api.aget_or_compute
    _alease_or_wait = _async_api._alease_or_wait
    _arelease = _async_api._arelease
    aclose = _async_api.aclose

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _observe_lookup(namespace: str, seconds: float) -> None:
    try:
        from infra.cache.stats import _Exporter

        _Exporter.families()["lookup"].labels(namespace=namespace, tier="l2").observe(seconds)
    except Exception:
        pass


def _after_fork(ref: weakref.ref[Cache]) -> None:
    c = ref()
    if c is not None:
        c._ns_lock = threading.Lock()
        c._l1.after_fork()
        # the child is another lease holder (its pid tells stores whether it is alive): never the parent
        c._owner = f"{socket.gethostname()}:{os.getpid()}:{id(c):x}"


_PROCESS_NAMES = ("get_cache", "set_cache", "reset_cache")


def __getattr__(name: str) -> Any:
    # The process-wide cache lives in infra.cache.process; these names stay importable from here.
    if name in _PROCESS_NAMES:
        from infra.cache import process

        return getattr(process, name)
    raise AttributeError(f"module 'infra.cache.core' has no attribute {name!r}")
