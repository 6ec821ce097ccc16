"""Per-namespace cache statistics, counted in memory and exported to the metrics registry in batches.

The hit path pays one ``list.append`` of the entry's cost (one C call, atomic under the GIL, no lock):
half of what a counter bump plus a float add cost, which was ~6 % of an L1 hit. ``fold`` moves those
into the totals (hits = their number, compute time saved = their sum) on every 0.1 s tick, and before any
read, so the list holds at most a tick's worth of hits. The deltas are pushed to the registry's counters by
``Cache`` at most every 0.1 s (on the same tick that polls namespace generations), on every 8th miss, on
every error, on ``Cache.get_stats()`` and, through the registry's collect hook (``push_all``), before every
read of the registry (a scrape, ``get_metrics().get_stats()``): every view is current even while the
process makes no cache call, and the hit path pays nothing for it.

Exported series (``namespace`` label on each; values never carry keys or secrets):
``infra_cache_hits_total``, ``infra_cache_misses_total``, ``infra_cache_errors_total{reason}``,
``infra_cache_uncacheable_total``, ``infra_cache_compute_seconds_saved_total``,
``infra_cache_evictions_total{tier}``, ``infra_cache_entries`` and ``infra_cache_bytes`` (gauges, from the
store), ``infra_cache_lookup_duration_seconds{tier}`` (sampled: one L2 lookup in 16).
"""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from typing import Any

from infra.cache import observability as _observability  # noqa: F401  (registers the cache's stats section)

__all__ = ["NamespaceStats", "NullStats", "count_value", "metric_families", "push_all", "track_for_collect"]

log = logging.getLogger("infra.cache")


def count_value(c: itertools.count[int]) -> int:
    """Current value of an ``itertools.count`` without advancing it."""
    return int(c.__reduce__()[1][0])


# Caches that export metrics, for the registry's collect hook (weak: a closed, dropped cache goes away).
_TRACKED: weakref.WeakSet[Any] = weakref.WeakSet()


def track_for_collect(cache: Any) -> None:
    """Have the registry call ``cache.push_metrics()`` before every read (render, ``get_stats``)."""
    _TRACKED.add(cache)
    try:
        from infra.metrics import get_metrics

        get_metrics().add_collect_hook(push_all)
    except Exception as exc:  # metrics must never break the cache
        log.warning("cache metrics collect hook not installed: %s", exc)


def push_all() -> None:
    """The collect hook: every tracked cache pushes its pending counts into the registry."""
    for cache in list(_TRACKED):
        cache.push_metrics()


def metric_families() -> dict[str, Any]:
    """The cache's metric families in the registry (registered on first use): name -> family."""
    return _Exporter.families()


class _Exporter:
    """Registers the metric families once per process (lazily: metrics may be swapped in tests)."""

    _lock = threading.Lock()
    _families: dict[str, Any] | None = None

    @classmethod
    def families(cls) -> dict[str, Any]:
        if cls._families is None:
            with cls._lock:
                if cls._families is None:
                    from infra.metrics import get_metrics

                    m = get_metrics()
                    m.add_collect_hook(push_all)
                    cls._families = {
                        "hits": m.counter(
                            "infra_cache_hits_total", "Cache hits (L1 or L2).", labelnames=("namespace",)
                        ),
                        "misses": m.counter(
                            "infra_cache_misses_total", "Cache misses.", labelnames=("namespace",)
                        ),
                        "errors": m.counter(
                            "infra_cache_errors_total",
                            "Cache failures (the call ran uncached).",
                            labelnames=("namespace", "reason"),
                        ),
                        "uncacheable": m.counter(
                            "infra_cache_uncacheable_total",
                            "Calls or results that could not be cached.",
                            labelnames=("namespace",),
                        ),
                        "saved": m.counter(
                            "infra_cache_compute_seconds_saved_total",
                            "Computation time hits saved (seconds).",
                            labelnames=("namespace",),
                        ),
                        "evictions": m.counter(
                            "infra_cache_evictions_total", "Entries evicted for space.", labelnames=("tier",)
                        ),
                        # Every worker reads the same store: combined by max, not summed N times.
                        "entries": m.gauge(
                            "infra_cache_entries",
                            "Entries in the store.",
                            labelnames=("namespace",),
                            aggregate="max",
                        ),
                        "bytes": m.gauge(
                            "infra_cache_bytes",
                            "Bytes in the store.",
                            labelnames=("namespace",),
                            aggregate="max",
                        ),
                        "lookup": m.histogram(
                            "infra_cache_lookup_duration_seconds",
                            "Cache lookup time (sampled).",
                            labelnames=("namespace", "tier"),
                        ),
                    }
        return cls._families

    @classmethod
    def reset(cls) -> None:
        with cls._lock:
            cls._families = None


class NamespaceStats:
    """Counters of one namespace. ``hit``/``miss`` are the hot calls; ``snapshot`` reads them."""

    __slots__ = (
        "_children",
        "_err_logged",
        "_flush_lock",
        "_flushed",
        "_fold_lock",
        "counting",
        "errors",
        "export",
        "hit_costs",
        "hits",
        "misses",
        "namespace",
        "saved",
        "uncacheable",
    )

    def __init__(self, namespace: str, *, export: bool = True) -> None:
        self.namespace = namespace
        self.export = export
        self.counting = True
        self.hit_costs: list[float] = []  # one entry per hit not yet folded (see the module doc)
        self.hits = 0
        self.misses = itertools.count()
        self.uncacheable = itertools.count()
        self.errors: dict[str, itertools.count[int]] = {}
        self.saved = 0.0
        self._flushed: dict[str, float] = {}
        self._flush_lock = threading.Lock()
        self._fold_lock = threading.Lock()
        self._children: dict[str, Any] | None = None
        self._err_logged: set[str] = set()

    # ------------------------------------------------------------------ hot path
    def hit(self, cost: float) -> None:
        pending = self.hit_costs
        pending.append(cost)
        if len(pending) >= 1024 and self.export:
            self.flush()

    def fold(self) -> None:
        """Move the pending hits into ``hits`` and ``saved``. The list object is never replaced (``Cache``
        holds its bound ``append``): the first ``n`` items are copied, then deleted, each one C call under
        the GIL, so a hit appended by another thread meanwhile lands after them and waits for the next fold.
        """
        pending = self.hit_costs
        if not pending:
            return
        with self._fold_lock:
            n = len(pending)
            done = pending[:n]
            del pending[:n]
            self.hits += n
            self.saved += sum(done)

    def miss(self) -> None:
        if next(self.misses) & 7 == 7 and self.export:
            self.flush()

    # ------------------------------------------------------------------ cold path
    def error(self, reason: str, exc: BaseException | None = None) -> None:
        """Count a failure of the cache itself; log the first of each reason at WARNING, the rest not."""
        c = self.errors.get(reason)
        if c is None:
            c = self.errors.setdefault(reason, itertools.count())
        next(c)
        if reason not in self._err_logged:
            self._err_logged.add(reason)
            log.warning(
                "cache %s error in namespace %r: %s (the call ran uncached; "
                "further %s errors are counted only)",
                reason,
                self.namespace,
                exc,
                reason,
            )
        if self.export:
            self.flush()

    def mark_uncacheable(self) -> None:
        next(self.uncacheable)
        if self.export:
            self.flush()

    def snapshot(self) -> dict[str, Any]:
        self.fold()
        hits, misses = self.hits, count_value(self.misses)
        errors = sum(count_value(c) for c in list(self.errors.values()))
        return {
            "hits": hits,
            "misses": misses,
            "hit_rate": round(hits / (hits + misses), 6) if hits + misses else 0.0,
            "errors": errors,
            "errors_by_reason": {r: count_value(c) for r, c in sorted(self.errors.items())},
            "uncacheable": count_value(self.uncacheable),
            "compute_seconds_saved": round(self.saved, 6),
        }

    def flush(self) -> None:
        """Push deltas since the last flush to the metrics registry (skipped if another thread is at it)."""
        if not self._flush_lock.acquire(blocking=False):
            return
        try:
            self.fold()
            ch = self._children
            if ch is None:
                fam = _Exporter.families()
                ns = self.namespace
                ch = self._children = {
                    "hits": fam["hits"].labels(namespace=ns),
                    "misses": fam["misses"].labels(namespace=ns),
                    "uncacheable": fam["uncacheable"].labels(namespace=ns),
                    "saved": fam["saved"].labels(namespace=ns),
                }
            values: dict[str, float] = {
                "hits": self.hits,
                "misses": count_value(self.misses),
                "uncacheable": count_value(self.uncacheable),
                "saved": self.saved,
            }
            for reason, c in list(self.errors.items()):
                name = "errors:" + reason
                if name not in ch:
                    ch[name] = _Exporter.families()["errors"].labels(namespace=self.namespace, reason=reason)
                values[name] = count_value(c)
            for name, v in values.items():
                delta = v - self._flushed.get(name, 0)
                if delta > 0:
                    ch[name].inc(delta)
                    self._flushed[name] = v
        except Exception as exc:
            if "metrics" not in self._err_logged:
                self._err_logged.add("metrics")
                log.warning("cache metrics export failed: %s", exc)
        finally:
            self._flush_lock.release()


class NullStats(NamespaceStats):
    """Counts nothing (``Cache(stats=False)``): the baseline that shows what counting costs a hit."""

    __slots__ = ()

    def __init__(self, namespace: str, *, export: bool = False) -> None:
        super().__init__(namespace, export=False)
        self.counting = False

    def hit(self, cost: float) -> None:
        pass

    def miss(self) -> None:
        pass
