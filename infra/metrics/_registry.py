"""The registry: get-or-create metrics by name, the cardinality guard's limit, stats for humans."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from . import _timer
from ._core import Counter, Gauge, Histogram, HistogramChild, _Metric
from ._timer import Timer, timer_class

__all__ = [
    "CACHE_HITS",
    "CACHE_MISSES",
    "DEFAULT_MAX_SERIES_PER_METRIC",
    "OPERATION_DURATION",
    "OPERATION_ERRORS",
    "MetricsRegistry",
    "get_metrics",
]

DEFAULT_MAX_SERIES_PER_METRIC = 2000
OPERATION_DURATION = "infra_operation_duration_seconds"
OPERATION_ERRORS = "infra_operation_errors_total"
CACHE_HITS = "infra_cache_hits_total"
CACHE_MISSES = "infra_cache_misses_total"

M = TypeVar("M", bound=_Metric)

# Every registry, for re-initialising locks in a forked child (weak: registries of tests go away).
_REGISTRIES: weakref.WeakSet[MetricsRegistry] = weakref.WeakSet()


def _round(x: float) -> float:
    # Stats are for people and dashboards: microsecond resolution in milliseconds is plenty.
    return round(x, 3)


def series_stats(child: HistogramChild, scale: float = 1.0) -> dict[str, Any]:
    """count, sum, min, max, mean, p50, p95, p99, p999 of one histogram series, times ``scale``."""
    sk = child.sketch()
    n = sk.count
    if n == 0:
        return {"count": 0, "sum": 0.0, "min": None, "max": None, "mean": None,
                "p50": None, "p95": None, "p99": None, "p999": None}  # fmt: skip
    p50, p95, p99, p999 = sk.quantiles((0.5, 0.95, 0.99, 0.999))
    return {
        "count": n,
        "sum": sk.sum * scale,
        "min": sk.min * scale,
        "max": sk.max * scale,
        "mean": sk.sum / n * scale,
        "p50": p50 * scale,
        "p95": p95 * scale,
        "p99": p99 * scale,
        "p999": p999 * scale,
    }


class MetricsRegistry:
    """Get-or-create home of every metric; ``get_metrics()`` returns the process-wide one.

    ``max_series_per_metric`` (default 2000, None for no limit) bounds each metric's label sets: past
    it, new label sets share one series whose label values are all ``__overflow__`` and each refusal
    counts in ``infra_metrics_dropped_series_total{metric=...}``.
    """

    def __init__(self, *, max_series_per_metric: int | None = DEFAULT_MAX_SERIES_PER_METRIC) -> None:
        if max_series_per_metric is not None and max_series_per_metric < 1:
            raise ValueError(f"max_series_per_metric must be >= 1 or None, got {max_series_per_metric!r}")
        self.max_series_per_metric = max_series_per_metric
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()
        # operation -> its Timer subclass (metric children resolved once per operation), for `timed`.
        self._timed: dict[str, type[Timer]] = {}
        self._timed_overflow: type[Timer] | None = None
        _REGISTRIES.add(self)

    @classmethod
    def from_config(cls, section: Any) -> MetricsRegistry:
        """Build from the ``metrics`` section of PerfConfig (reads ``max_series_per_metric``)."""
        return cls(
            max_series_per_metric=getattr(section, "max_series_per_metric", DEFAULT_MAX_SERIES_PER_METRIC)
        )

    def configure(self, section: Any) -> MetricsRegistry:
        """Apply the ``metrics`` section of PerfConfig to this (already existing) registry.

        ``get_metrics()`` exists from import time, before any config is read; ``infra.enable()`` calls
        ``get_metrics().configure(cfg.metrics)``. Only affects series created afterwards.
        """
        limit = getattr(section, "max_series_per_metric", DEFAULT_MAX_SERIES_PER_METRIC)
        if limit is not None and limit < 1:
            raise ValueError(f"max_series_per_metric must be >= 1 or None, got {limit!r}")
        self.max_series_per_metric = limit
        return self

    # -- registration --------------------------------------------------------------------------

    def _get(self, cls: type[M], name: str, documentation: str, labelnames: Sequence[str], **kw: Any) -> M:
        m = self._metrics.get(name)
        if m is None:
            with self._lock:
                m = self._metrics.get(name)
                if m is None:
                    m = cls(name, documentation, labelnames, self, **kw)
                    self._metrics = {**self._metrics, name: m}  # copy-on-write: collect() never locks
                    return m
        if type(m) is not cls:
            raise ValueError(f"metric {name!r} is already registered as a {m.kind}, not a {cls.kind}")
        if tuple(labelnames) != m.labelnames:
            raise ValueError(
                f"metric {name!r} is already registered with labels {m.labelnames!r}, "
                f"not {tuple(labelnames)!r}"
            )
        buckets = kw.get("buckets")
        if buckets is not None and isinstance(m, Histogram):
            from ._core import _check_buckets

            if _check_buckets(name, buckets) != m.buckets:
                raise ValueError(f"histogram {name!r} is already registered with buckets {m.buckets!r}")
        return m  # type: ignore[return-value]  # isinstance above narrowed M to Histogram

    def counter(self, name: str, documentation: str = "", labelnames: Sequence[str] = ()) -> Counter:
        """Get or create a counter (the same object for the same name)."""
        return self._get(Counter, name, documentation, labelnames)

    def gauge(self, name: str, documentation: str = "", labelnames: Sequence[str] = ()) -> Gauge:
        """Get or create a gauge."""
        return self._get(Gauge, name, documentation, labelnames)

    def histogram(
        self,
        name: str,
        documentation: str = "",
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float] | None = None,
    ) -> Histogram:
        """Get or create a histogram; ``buckets`` are the ``le`` boundaries (default DEFAULT_BUCKETS)."""
        return self._get(Histogram, name, documentation, labelnames, buckets=buckets)

    def _internal_counter(self, name: str, documentation: str) -> Counter:
        # The layer's own bookkeeping is exempt from the guard (it is bounded by the number of metrics).
        m = self._metrics.get(name)
        if m is None:
            with self._lock:
                m = self._metrics.get(name)
                if m is None:
                    m = Counter(name, documentation, ("metric",), self, guarded=False)
                    self._metrics = {**self._metrics, name: m}
        assert isinstance(m, Counter)
        return m

    def _timer_class(self, operation: str) -> type[Timer]:
        cls = self._timed.get(operation)
        if cls is None:
            h = self.histogram(OPERATION_DURATION, "Duration of timed operations.", ("operation",))
            e = self.counter(OPERATION_ERRORS, "Timed operations that raised.", ("operation",))
            hc, ec = h.labels(operation), e.labels(operation)
            if hc.label_values != (operation,):
                # Over the series limit: every further operation shares the overflow series' class,
                # and isn't cached by name, so memory stays bounded whatever names callers invent.
                if self._timed_overflow is None:
                    self._timed_overflow = timer_class(hc, ec)
                return self._timed_overflow
            cls = timer_class(hc, ec)
            # In-place item assignment is atomic; two threads racing here build equivalent classes.
            self._timed[operation] = cls
        return cls

    # -- reading ---------------------------------------------------------------------------------

    def collect(self) -> list[_Metric]:
        """The registered metrics, sorted by name (a snapshot; safe while others register)."""
        return [m for _, m in sorted(self._metrics.items())]

    def get(self, name: str) -> _Metric | None:
        """The metric registered under ``name``, if any."""
        return self._metrics.get(name)

    def histogram_stats(self, name: str, *, scale: float = 1.0) -> list[dict[str, Any]]:
        """Per series of histogram ``name``: {"labels": {...}, count, sum, min, max, mean, p50, p95, p99,
        p999}, values times ``scale`` (1000 for ms from seconds). Empty list if not registered."""
        m = self._metrics.get(name)
        if m is None:
            return []
        if not isinstance(m, Histogram):
            raise ValueError(f"metric {name!r} is a {m.kind}, not a histogram")
        out = []
        for child in m.children():
            st = series_stats(child, scale)
            st["labels"] = dict(zip(m.labelnames, child.label_values, strict=False))
            out.append(st)
        return out

    def get_stats(self) -> dict[str, Any]:
        """JSON-ready summary, the shape of seed 004's README.

        ``{operation: {count, errors, sum_ms, min_ms, max_ms, mean_ms, avg_ms, p50_ms, p95_ms, p99_ms},
        ..., "cache": {namespace: {hits, misses, hit_rate}}}`` where operations come from ``timed``
        and hit_rate is a percentage (80.0). An operation literally named "cache" is reported under
        "operations" instead, so it can't hide the cache section.
        """
        out: dict[str, Any] = {}
        errors: dict[str, float] = {}
        em = self._metrics.get(OPERATION_ERRORS)
        if isinstance(em, Counter):
            for c in em.children():
                errors[c.label_values[0]] = c.get()
        hm = self._metrics.get(OPERATION_DURATION)
        if isinstance(hm, Histogram):
            for child in hm.children():
                op = child.label_values[0]
                st = series_stats(child, 1000.0)
                if st["count"] == 0 and not errors.get(op):
                    continue
                entry: dict[str, Any] = {"count": st["count"], "errors": int(errors.get(op, 0))}
                for k in ("sum", "min", "max", "mean"):
                    entry[f"{k}_ms"] = None if st[k] is None else _round(st[k])
                entry["avg_ms"] = entry["mean_ms"]  # seed 004's README calls the mean avg_ms
                for k in ("p50", "p95", "p99"):
                    entry[f"{k}_ms"] = None if st[k] is None else _round(st[k])
                if op == "cache":
                    out.setdefault("operations", {})[op] = entry
                else:
                    out[op] = entry
        out["cache"] = self._cache_stats()
        return out

    def _cache_stats(self) -> dict[str, dict[str, Any]]:
        def by_ns(name: str) -> Mapping[str, float]:
            m = self._metrics.get(name)
            if not isinstance(m, Counter) or "namespace" not in m.labelnames:
                return {}
            i = m.labelnames.index("namespace")
            acc: dict[str, float] = {}
            for c in m.children():
                ns = c.label_values[i]
                acc[ns] = acc.get(ns, 0.0) + c.get()
            return acc

        hits, misses = by_ns(CACHE_HITS), by_ns(CACHE_MISSES)
        cache: dict[str, dict[str, Any]] = {}
        for ns in sorted(set(hits) | set(misses)):
            h, m = int(hits.get(ns, 0)), int(misses.get(ns, 0))
            cache[ns] = {"hits": h, "misses": m, "hit_rate": round(100.0 * h / (h + m), 1) if h + m else 0.0}
        return cache

    def reset(self) -> None:
        """Zero every series in place (for tests). Bound children kept by callers stay valid."""
        for m in self.collect():
            m._reset()

    def __repr__(self) -> str:
        limit = self.max_series_per_metric
        return f"MetricsRegistry(metrics={len(self._metrics)}, max_series_per_metric={limit})"


_registry = MetricsRegistry()
_timer._default_registry = _registry


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork() stays held forever in the child (that thread doesn't
    # exist there), and the first scrape or new series would deadlock. Give every lock a fresh one;
    # the other threads' shards are folded on next use since their Thread objects are dead here.
    for reg in list(_REGISTRIES):
        reg._lock = threading.Lock()
        for m in reg._metrics.values():
            m._after_fork()


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_metrics() -> MetricsRegistry:
    """The process-wide registry every part of the layer reports into."""
    return _registry
