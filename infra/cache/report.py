"""What a ``Cache`` reports: ``get_stats()``'s JSON and the registry's view (``push_metrics``).

``CacheReport`` reads the cache through its public surface (``enabled``, ``backend``, ``l1``,
``namespace_counters()``, ``backend_error``) and keeps only what reporting itself needs: the eviction
counts already exported and when the store's gauges were last refreshed (issue 16: at most every 0.5 s,
and never more than 1/20 of the time, since a Redis store is counted by SCAN).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from infra.cache import fleet_stats
from infra.cache.backends.base import CacheBackend
from infra.cache.l1 import L1Cache
from infra.cache.stats import NamespaceStats, metric_families

if TYPE_CHECKING:
    from infra.cache.core import Cache

__all__ = ["CacheReport", "observe_lookup"]

_perf = time.perf_counter


def observe_lookup(namespace: str, seconds: float) -> None:
    """One sampled L2 lookup's duration, into ``infra_cache_lookup_duration_seconds{tier="l2"}``."""
    with contextlib.suppress(Exception):
        metric_families()["lookup"].labels(namespace=namespace, tier="l2").observe(seconds)


def _l2_evictions(backend: CacheBackend | None) -> int:
    return int(getattr(backend, "evictions", 0) or 0)


class CacheReport:
    """The reporting side of one ``Cache`` (``export``: whether it feeds the metrics registry; off with
    ``metrics.enabled: false``, while ``fleet``, the store's counters, stay the cache's own accounting)."""

    __slots__ = ("_evictions_exported", "_gauges_at", "export", "fleet")

    def __init__(self, *, export: bool, fleet: bool) -> None:
        self.export = export
        self.fleet = fleet  # whether get_stats() reads the store's fleet counters (the cache's own state)
        self._evictions_exported: dict[str, int] = {}
        self._gauges_at = float("-inf")

    def export_evictions(self, l1: L1Cache, backend: CacheBackend | None) -> None:
        """Push L1 and store eviction counts to ``infra_cache_evictions_total{tier}`` (deltas)."""
        with contextlib.suppress(Exception):
            fam = metric_families()["evictions"]
            for tier, now_count in (("l1", l1.evictions), ("l2", _l2_evictions(backend))):
                delta = now_count - self._evictions_exported.get(tier, 0)
                if delta > 0:
                    fam.labels(tier=tier).inc(delta)
                    self._evictions_exported[tier] = now_count

    def stats(self, cache: Cache) -> dict[str, Any]:
        """``Cache.get_stats()``: see there."""
        l1, backend = cache.l1, cache.backend
        out: dict[str, Any] = {
            "enabled": cache.enabled,
            "backend": backend.name if backend is not None else "memory",
            "total_entries": 0,
            "total_bytes": 0,
            "by_type": {},
            "hits": 0,
            "misses": 0,
            "hit_rate": 0.0,
            "errors": 0,
            "compute_seconds_saved": 0.0,
            "l1": {"entries": len(l1), "bytes": l1.nbytes, "evictions": l1.evictions},
            "namespaces": {},
        }
        if cache.backend_error:
            out["backend_error"] = cache.backend_error
        if not cache.enabled:
            return out
        if self.export:
            self.export_evictions(l1, backend)
        by_ns: Mapping[str, tuple[int, int]] = {}
        if backend is not None:
            out["l2_evictions"] = _l2_evictions(backend)
            try:
                bs = backend.stats()
                by_ns = bs.by_namespace
                out["total_entries"], out["total_bytes"] = bs.entries, bs.bytes
                out["store"] = dict(bs.extra)
            except Exception as exc:
                out["backend_error"] = str(exc)
        counters = cache.namespace_counters()
        fam = None
        if self.export:
            with contextlib.suppress(Exception):
                fam = metric_families()
        for name in sorted(set(by_ns) | set(counters)):
            entries, nbytes = by_ns.get(name, (0, 0))
            snap: dict[str, Any] = {"entries": entries, "bytes": nbytes}
            stats = counters.get(name)
            if stats is not None:
                stats.flush() if self.export else None
                snap.update(stats.snapshot())
            else:
                snap.update(NamespaceStats(name, export=False).snapshot())
            out["by_type"][name] = entries
            out["namespaces"][name] = snap
            for total in ("hits", "misses", "errors", "compute_seconds_saved"):
                out[total] += snap[total]
            if fam is not None:
                with contextlib.suppress(Exception):
                    fam["entries"].labels(namespace=name).set(entries)
                    fam["bytes"].labels(namespace=name).set(nbytes)
        if backend is None and not by_ns:
            out["total_entries"] = len(l1)
            out["total_bytes"] = l1.nbytes
        total = out["hits"] + out["misses"]
        out["hit_rate"] = round(out["hits"] / total, 6) if total else 0.0
        out["compute_seconds_saved"] = round(out["compute_seconds_saved"], 6)
        self._add_fleet(cache, out)
        return out

    def _add_fleet(self, cache: Cache, out: dict[str, Any]) -> None:
        """``fleet``: every process's counts per namespace since the last ``cache stats --reset``, from the
        store (this process's pushed first); the figures above are this process's (issue 16)."""
        if not self.fleet or cache.backend is None:
            return
        try:
            totals = fleet_stats.fleet_totals(cache)
        except Exception as exc:
            out["fleet_error"] = str(exc)
            return
        if totals is not None:
            out["fleet"] = {name: c.to_dict() for name, c in sorted(totals.items())}

    def push(self, cache: Cache) -> None:
        """``Cache.push_metrics()``: see there."""
        counters = cache.namespace_counters()
        for stats in counters.values():
            stats.flush()
        backend = cache.backend
        self.export_evictions(cache.l1, backend)
        now = _perf()
        if backend is None or now < self._gauges_at:
            return
        fam = metric_families()
        try:
            by_ns = backend.stats().by_namespace
        except Exception:
            self._gauges_at = now + 5.0
            return  # counted by the calls that fail; a scrape must not fail for it
        finally:
            if self._gauges_at <= now:
                self._gauges_at = now + max(0.5, 20 * (_perf() - now))
        for name in sorted(set(by_ns) | set(counters)):
            entries, nbytes = by_ns.get(name, (0, 0))
            fam["entries"].labels(namespace=name).set(entries)
            fam["bytes"].labels(namespace=name).set(nbytes)
