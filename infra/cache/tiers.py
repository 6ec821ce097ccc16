"""An entry's way between the tiers: read from the store into the L1, written through both.

``Tiers`` holds the L1 and the store (``backend``, None: L1 only) of one ``Cache`` and does what every
read and write path needs (the hottest ones, ``Cache.get`` and ``Cache.l1_hit``, write their L1 step out):

* ``l2_get`` / ``al2_get``: the store's entry, a failure counted as a read error (and a miss);
  one lookup in 16 is timed into ``infra_cache_lookup_duration_seconds{tier="l2"}``.
* ``accept``: decode a store entry, fill the L1 under the generation read *before* the lookup, count the
  hit. Should an invalidation be pushed while the lookup runs, the entry lands under the old generation
  and is never served (see ``infra.cache.changes``).
* ``prepare``: the store's form of a value (None: uncacheable, counted); the L1 gets its own form.
* ``shared``: a single-flight leader's result in the form each follower thaws into its own copy.
* ``write`` / ``delete`` / ``read_many`` / ``write_many`` and their async twins: the store's half of
  ``Cache``'s verbs, failures counted (``write`` / ``read`` errors), never raised.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from infra.cache._missing import MISSING
from infra.cache.backends.base import CacheBackend, StoredEntry
from infra.cache.codecs import DecodeError
from infra.cache.l1 import L1Cache
from infra.cache.namespaces import Namespace
from infra.cache.report import observe_lookup
from infra.cache.values import Thaw, freeze_plain

__all__ = ["Tiers"]

_time = time.time
_perf = time.perf_counter


class Tiers:
    """The L1 and the store of one cache, and the moves of an entry between them."""

    __slots__ = ("_lookups", "backend", "export", "inline", "l1")

    def __init__(self, l1: L1Cache, backend: CacheBackend | None, *, export: bool) -> None:
        self.l1 = l1
        self.backend = backend
        self.export = export
        # the backend's async methods are its sync ones (SQLite): async paths call those, no thread hop
        self.inline = backend is not None and type(backend).aget is CacheBackend.aget
        self._lookups = 0

    def l1_get(self, ns: Namespace, key: str, now: float) -> Any:
        """The L1's live value (a hit counted), else ``MISSING``."""
        return self.l1.probe((ns.name, key), ns.gen, now, ns.stats.hit)

    def lookup(self, ns: Namespace, key: str, now: float) -> Any:
        """The L1's live value, else the store's (accepted into L1), else ``MISSING``; a hit counted."""
        v = self.l1_get(ns, key, now)
        return v if v is not MISSING else self.reread(ns, key)

    async def alookup(self, ns: Namespace, key: str, now: float) -> Any:
        v = self.l1_get(ns, key, now)
        return v if v is not MISSING else await self.areread(ns, key)

    def shared(self, ns: Namespace, key: str, value: Any) -> tuple[Any, Thaw]:
        """The leader's result in a form each single-flight follower thaws into its own copy: the L1 entry
        just written when there is one, else a copy made before the leader hands ``value`` out."""
        e = self.l1.peek((ns.name, key), ns.gen, float("-inf"))
        if e is not None:
            return e.stored, e.thaw
        return freeze_plain(value)

    def accept(self, ns: Namespace, key: str, se: StoredEntry | None, gen: int) -> Any:
        """Decode a store entry, fill L1 (under ``gen``), count the hit; ``MISSING``: none, or undecodable."""
        if se is None:
            return MISSING
        try:
            value = ns.codec.decode(se.payload, se.codec)
        except DecodeError as exc:
            ns.stats.error("decode", exc)
            return MISSING
        if self.l1.max_items > 0:
            self.l1.set((ns.name, key), ns.l1_entry(value, se.payload, se.codec, se.expires_at, gen, se.cost))
        ns.stats.hit(se.cost)
        return value

    def l2_get(self, ns: Namespace, key: str) -> StoredEntry | None:
        b = self.backend
        if b is None:
            return None
        self._lookups += 1
        sample = not self._lookups & 15
        t0 = _perf() if sample else 0.0
        try:
            se = b.get(ns.name, key)
        except Exception as exc:
            ns.stats.error("read", exc)
            return None
        if sample and self.export:
            observe_lookup(ns.name, _perf() - t0)
        return se

    async def al2_get(self, ns: Namespace, key: str) -> StoredEntry | None:
        b = self.backend
        if b is None:
            return None
        if self.inline:
            return self.l2_get(ns, key)
        try:
            return await b.aget(ns.name, key)
        except Exception as exc:
            ns.stats.error("read", exc)
            return None

    def reread(self, ns: Namespace, key: str) -> Any:
        """The store's entry, accepted into L1 (``MISSING`` if absent); the generation is read first."""
        gen = ns.gen
        return self.accept(ns, key, self.l2_get(ns, key), gen)

    async def areread(self, ns: Namespace, key: str) -> Any:
        gen = ns.gen
        return self.accept(ns, key, await self.al2_get(ns, key), gen)

    def prepare(
        self, ns: Namespace, key: str, value: Any, ttl: float | None, cost: float
    ) -> StoredEntry | None:
        """The store's form of ``value`` (None: uncacheable, counted); the L1 gets its own form now."""
        enc = ns.encode(value)
        if enc is None:
            return None
        payload, codec = enc
        se = StoredEntry(payload, codec, ns.expires_at(ttl, _time()), cost)
        if self.l1.max_items > 0:
            self.l1.set((ns.name, key), ns.l1_entry(value, payload, codec, se.expires_at, ns.gen, cost))
        return se

    def prepare_many(
        self, ns: Namespace, mapping: Mapping[str, Any], ttl: float | None
    ) -> dict[str, StoredEntry]:
        items: dict[str, StoredEntry] = {}
        for k, v in mapping.items():
            se = self.prepare(ns, k, v, ttl, 0.0)
            if se is not None:
                items[k] = se
        return items

    def many_l1(self, ns: Namespace, keys: Iterable[str], now: float) -> tuple[dict[str, Any], list[str]]:
        """The L1's hits among ``keys``, and the keys left for the store."""
        out: dict[str, Any] = {}
        rest: list[str] = []
        for k in keys:
            v = self.l1_get(ns, k, now)
            if v is MISSING:
                rest.append(k)
            else:
                out[k] = v
        return out, rest

    def many_accept(
        self, ns: Namespace, rest: list[str], found: Mapping[str, StoredEntry], out: dict[str, Any], gen: int
    ) -> None:
        """Accept the store's answers for ``rest`` into ``out``; each key it lacks counts a miss."""
        for k in rest:
            v = self.accept(ns, k, found.get(k), gen)
            if v is MISSING:
                ns.stats.miss()
            else:
                out[k] = v

    # ------------------------------------------------------------------ the store's half of the verbs
    def write(self, ns: Namespace, key: str, value: Any, ttl: float | None, cost: float) -> None:
        se = self.prepare(ns, key, value, ttl, cost)
        if se is not None and self.backend is not None:
            try:
                self.backend.set(ns.name, key, se)
            except Exception as exc:
                ns.stats.error("write", exc)

    async def awrite(self, ns: Namespace, key: str, value: Any, ttl: float | None, cost: float) -> None:
        se = self.prepare(ns, key, value, ttl, cost)
        if se is not None and self.backend is not None:
            try:
                await self.backend.aset(ns.name, key, se)
            except Exception as exc:
                ns.stats.error("write", exc)

    def write_many(self, ns: Namespace, mapping: Mapping[str, Any], ttl: float | None) -> None:
        items = self.prepare_many(ns, mapping, ttl)
        if items and self.backend is not None:
            try:
                self.backend.set_many(ns.name, items)
            except Exception as exc:
                ns.stats.error("write", exc)

    async def awrite_many(self, ns: Namespace, mapping: Mapping[str, Any], ttl: float | None) -> None:
        items = self.prepare_many(ns, mapping, ttl)
        if items and self.backend is not None:
            try:
                await self.backend.aset_many(ns.name, items)
            except Exception as exc:
                ns.stats.error("write", exc)

    def delete(self, ns: Namespace, key: str) -> bool:
        """Drop ``key`` from L1 and the store; True if the store had it."""
        self.l1.delete((ns.name, key))
        if self.backend is None:
            return False
        try:
            return self.backend.delete(ns.name, key)
        except Exception as exc:
            ns.stats.error("write", exc)
            return False

    async def adelete(self, ns: Namespace, key: str) -> bool:
        self.l1.delete((ns.name, key))
        if self.backend is None:
            return False
        try:
            return await self.backend.adelete(ns.name, key)
        except Exception as exc:
            ns.stats.error("write", exc)
            return False

    def read_many(self, ns: Namespace, keys: Iterable[str], now: float) -> dict[str, Any]:
        """The values of ``keys`` that hit: L1 first, one store round trip for the rest."""
        out, rest = self.many_l1(ns, keys, now)
        if rest:
            gen = ns.gen  # read before the store: see accept
            self.many_accept(ns, rest, self._found(ns, rest), out, gen)
        return out

    async def aread_many(self, ns: Namespace, keys: Iterable[str], now: float) -> dict[str, Any]:
        out, rest = self.many_l1(ns, keys, now)
        if rest:
            gen = ns.gen
            self.many_accept(ns, rest, await self._afound(ns, rest), out, gen)
        return out

    def _found(self, ns: Namespace, keys: list[str]) -> Mapping[str, StoredEntry]:
        try:
            return {} if self.backend is None else self.backend.get_many(ns.name, keys)
        except Exception as exc:
            ns.stats.error("read", exc)
            return {}

    async def _afound(self, ns: Namespace, keys: list[str]) -> Mapping[str, StoredEntry]:
        try:
            return {} if self.backend is None else await self.backend.aget_many(ns.name, keys)
        except Exception as exc:
            ns.stats.error("read", exc)
            return {}
