"""The Redis backend's housekeeping, SCAN based and bounded: purge, clear, byte caps, stats, inspect and the
fleet counters, all on the admin client (``op_timeout``, not the cached call's budget).
``RedisHousekeeping`` is a base of ``RedisBackend``.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from infra.cache import fleet_stats as _fleet
from infra.cache.backends.base import BackendStats, EntryInfo, usage_stats
from infra.cache.backends.redis.layout import HEADER, SCAN_BATCH, glob_escape, quote_ns, unquote_ns

__all__ = ["KeyUsage", "RedisHousekeeping"]


class KeyUsage(NamedTuple):
    """One entry key as a SCAN pass sees it."""

    key: bytes
    size: int  # payload bytes (without the header)
    idle: int  # seconds since last access (OBJECT IDLETIME)


class RedisHousekeeping:
    """SCAN-based housekeeping of ``RedisBackend`` (which sets the state below in its ``__init__``)."""

    prefix: str
    origin: str
    _gens_key: str
    _changes_key: str
    _channel: str
    _known: dict[str, int]
    _listening: bool
    _max_bytes: int | None
    _ns_caps: dict[str, int]

    if TYPE_CHECKING:  # RedisBackend's: run ``fn(client, *args)`` through the gate

        def _call(self, fn: Callable[..., Any], *args: Any, admin: bool = False) -> Any: ...

    def _scan_entries(self, c: Any, ns: str | None) -> Iterable[list[bytes]]:
        pattern = f"{self.prefix}:e:{glob_escape(quote_ns(ns))}:*" if ns is not None else f"{self.prefix}:e:*"
        batch: list[bytes] = []
        for k in c.scan_iter(match=pattern, count=SCAN_BATCH):
            batch.append(k)
            if len(batch) >= SCAN_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def _split(self, raw_key: bytes) -> tuple[str, str]:
        rest = raw_key.decode("utf-8", "replace")[len(self.prefix) + 3 :]
        q, _, key = rest.partition(":")
        return unquote_ns(q), key

    def purge(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` entries of an older generation (Redis expires the timed-out ones itself)."""

        def op(c: Any) -> int:
            gens = {k.decode(): int(v) for k, v in c.hgetall(self._gens_key).items()}
            removed = 0
            for batch in self._scan_entries(c, None):
                with c.pipeline(transaction=False) as p:
                    for k in batch:
                        p.getrange(k, 0, 9)
                    heads = p.execute()
                stale = []
                for k, h in zip(batch, heads, strict=False):
                    if len(h) >= 10 and struct.unpack_from("!q", h, 2)[0] != gens.get(self._split(k)[0], 0):
                        stale.append(k)
                stale = stale[: limit - removed]
                if stale:
                    removed += int(c.unlink(*stale))
                if removed >= limit:
                    break
            return removed

        return int(self._call(op, admin=True))

    def clear(self, namespace: str | None = None) -> int:
        def op(c: Any) -> int:
            n = 0
            touched = {namespace} if namespace is not None else set(self._known)
            for batch in self._scan_entries(c, namespace):
                if namespace is None:
                    touched.update(self._split(k)[0] for k in batch)
                n += int(c.unlink(*batch))
            if namespace is None:
                touched.update(k.decode() for k in c.hkeys(self._gens_key))
                touched.update(k.decode() for k in c.hkeys(self._changes_key))
            names = sorted(touched)
            with c.pipeline(transaction=False) as p:  # count the change: every L1 drops the namespace
                for ns in names:
                    p.hincrby(self._changes_key, ns, 1)
                counts = p.execute()
            with c.pipeline(transaction=False) as p:
                for ns, count in zip(names, counts, strict=True):
                    p.publish(self._channel, f"c{count}:{ns}")
                p.execute()
            return n

        return int(self._call(op, admin=True))

    def _usage(self, c: Any, ns: str | None = None) -> list[KeyUsage]:
        """(raw key, payload bytes, idle seconds) of every entry (of one namespace)."""
        out: list[KeyUsage] = []
        for batch in self._scan_entries(c, ns):
            with c.pipeline(transaction=False) as p:
                for k in batch:
                    p.strlen(k)
                    p.object("idletime", k)
                res = p.execute(raise_on_error=False)
            for i, k in enumerate(batch):
                size, idle = res[2 * i], res[2 * i + 1]
                if isinstance(size, int) and size > 0:
                    out.append(KeyUsage(k, max(0, size - HEADER.size), idle if isinstance(idle, int) else 0))
        return out

    # -- fleet-wide counters (infra.cache.fleet_stats): hash {prefix}:fleet, <= 2 MULTIs a second;
    # housekeeping, so on the admin client (long timeouts, not the cached call's budget)
    def fleet_add(self, deltas: Mapping[str, _fleet.FleetCounts]) -> None:
        self._call(_fleet.redis_add, f"{self.prefix}:fleet", deltas, admin=True)

    def fleet_read(self) -> dict[str, _fleet.FleetCounts]:
        return dict(self._call(_fleet.redis_read, f"{self.prefix}:fleet", admin=True))

    def fleet_reset(self, namespace: str | None = None) -> None:
        self._call(_fleet.redis_reset, f"{self.prefix}:fleet", namespace, admin=True)

    def stats(self) -> BackendStats:
        def op(c: Any) -> BackendStats:
            by_ns: dict[str, tuple[int, int]] = {}
            for k, size, _idle in self._usage(c):
                ns = self._split(k)[0]
                n, b = by_ns.get(ns, (0, 0))
                by_ns[ns] = (n + 1, b + size)
            extra = {"backend": "redis", "server": self.origin, "prefix": self.prefix}
            return usage_stats(by_ns, {**extra, "listening": self._listening})

        return self._call(op, admin=True)  # type: ignore[no-any-return]

    def inspect(self, namespace: str | None = None, limit: int = 20) -> list[EntryInfo]:
        def op(c: Any) -> list[EntryInfo]:
            rows = sorted(self._usage(c, namespace), key=lambda u: u.idle)[:limit]
            now = time.time()
            with c.pipeline(transaction=False) as p:
                for k, _s, _i in rows:
                    p.getrange(k, 0, HEADER.size - 1)
                heads = p.execute()
            out = []
            for (k, size, idle), h in zip(rows, heads, strict=False):
                if len(h) < HEADER.size:
                    continue
                _v, codec, _g, exp, cost, created = HEADER.unpack(h)
                ns, key = self._split(k)
                out.append(
                    EntryInfo(ns, key, codec, size, created, now - idle, None if exp != exp else exp, cost)
                )
            return out

        return self._call(op, admin=True)  # type: ignore[no-any-return]

    def maintain(self) -> int:
        """Enforce the byte caps now (normally periodic, on the background thread); returns #evicted."""

        def op(c: Any) -> int:
            evicted = 0
            rows = self._usage(c)
            by_ns: dict[str, list[KeyUsage]] = {}
            for r in rows:
                by_ns.setdefault(self._split(r.key)[0], []).append(r)
            doomed: list[bytes] = []
            for ns, cap in self._ns_caps.items():
                items = sorted(by_ns.get(ns, []), key=lambda u: -u.idle)  # most idle first
                used = sum(u.size for u in items)
                while items and used > cap:
                    k, size, _ = items.pop(0)
                    doomed.append(k)
                    used -= size
                by_ns[ns] = items
            if self._max_bytes:
                rest = sorted((u for v in by_ns.values() for u in v), key=lambda u: -u.idle)
                total = sum(u.size for u in rest)
                for k, size, _ in rest:
                    if total <= self._max_bytes:
                        break
                    doomed.append(k)
                    total -= size
            for i in range(0, len(doomed), SCAN_BATCH):
                evicted += int(c.unlink(*doomed[i : i + SCAN_BATCH]))
            return evicted

        return int(self._call(op, admin=True))
