"""The registry: get-or-create metrics by name, the cardinality guard's limit, stats for humans."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

if TYPE_CHECKING:
    from infra.config.sections.metrics import MetricsConfig

from ._core import Counter, Gauge, Histogram, HistogramChild, Metric
from ._names import check_buckets
from ._sketch import QuantileSketch
from ._timer import Timer, timer_class
from ._views import (
    OPERATION_DURATION,
    OPERATION_ERRORS,
    OperationView,
    StatsSection,
    default_sections,
    default_views,
)

__all__ = [
    "DEFAULT_MAX_SERIES_PER_METRIC",
    "OPERATION_DURATION",
    "OPERATION_ERRORS",
    "HistogramSeriesStats",
    "MetricsRegistry",
    "OperationRow",
    "SeriesStats",
    "get_metrics",
    "timed",
]

DEFAULT_MAX_SERIES_PER_METRIC = 2000

_log = logging.getLogger("infra.metrics")
_in_hook = threading.local()  # a hook that reads the registry must not run the hooks again

M = TypeVar("M", bound=Metric)

# Every registry, for re-initialising locks in a forked child (weak: registries of tests go away).
_REGISTRIES: weakref.WeakSet[MetricsRegistry] = weakref.WeakSet()


def _round(x: float) -> float:
    # Stats are for people and dashboards: microsecond resolution in milliseconds is plenty.
    return round(x, 3)


class OperationRow(TypedDict):
    """One operation row of ``get_stats()``: durations in milliseconds (None before the first call)."""

    count: int
    errors: int
    sum_ms: float
    min_ms: float | None
    max_ms: float | None
    mean_ms: float | None
    avg_ms: float | None  # the mean again: seed 004's README calls it avg_ms
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class SeriesStats(TypedDict):
    """count, sum, min, max, mean and quantiles of one histogram series (None while it is empty)."""

    count: int
    sum: float
    min: float | None
    max: float | None
    mean: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    p999: float | None


class HistogramSeriesStats(SeriesStats):
    """One series of ``MetricsRegistry.histogram_stats()``: its stats and its labels by name."""

    labels: dict[str, str]


def _row(sk: QuantileSketch, errors: int) -> OperationRow:
    """One ``get_stats()`` operation row (milliseconds) from a merged sketch of seconds."""
    n = sk.count
    if n == 0:
        return {"count": n, "errors": errors, "sum_ms": 0.0, "min_ms": None, "max_ms": None, "mean_ms": None,
                "avg_ms": None, "p50_ms": None, "p95_ms": None, "p99_ms": None}  # fmt: skip
    p50, p95, p99 = sk.quantiles((0.5, 0.95, 0.99))
    mean = _round(sk.sum / n * 1000.0)
    return {
        "count": n,
        "errors": errors,
        "sum_ms": _round(sk.sum * 1000.0),
        "min_ms": _round(sk.min * 1000.0),
        "max_ms": _round(sk.max * 1000.0),
        "mean_ms": mean,
        "avg_ms": mean,
        "p50_ms": _round(p50 * 1000.0),
        "p95_ms": _round(p95 * 1000.0),
        "p99_ms": _round(p99 * 1000.0),
    }


def series_stats(child: HistogramChild, scale: float = 1.0) -> SeriesStats:
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
        self._metrics: dict[str, Metric] = {}
        self._lock = threading.Lock()
        # operation -> its Timer subclass (metric children resolved once per operation), for `timed`.
        self._timed: dict[str, type[Timer]] = {}
        self._timed_overflow: type[Timer] | None = None
        self._views: tuple[OperationView, ...] = ()  # this registry's own, after default_views()
        self._sections: dict[str, StatsSection] = {}  # this registry's own, over default_sections()
        self._hooks: tuple[Callable[[], None], ...] = ()
        self._hook_failed: set[object] = set()  # hooks and sections logged once
        self._combiner: Any = None  # infra.metrics.multiprocess.MultiProcess when that mode is on
        _REGISTRIES.add(self)

    @classmethod
    def from_config(cls, section: MetricsConfig | None) -> MetricsRegistry:
        """Build from the ``metrics`` section of PerfConfig (reads ``max_series_per_metric``)."""
        return cls(
            max_series_per_metric=getattr(section, "max_series_per_metric", DEFAULT_MAX_SERIES_PER_METRIC)
        )

    def configure(self, section: MetricsConfig | None) -> MetricsRegistry:
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
        aggregate = kw.get("aggregate")
        if aggregate is not None and isinstance(m, Gauge) and aggregate != m.aggregate:
            raise ValueError(f"gauge {name!r} is already registered with aggregate {m.aggregate!r}")
        buckets = kw.get("buckets")
        if buckets is not None and isinstance(m, Histogram) and check_buckets(name, buckets) != m.buckets:
            raise ValueError(f"histogram {name!r} is already registered with buckets {m.buckets!r}")
        return m

    def counter(self, name: str, documentation: str = "", labelnames: Sequence[str] = ()) -> Counter:
        """Get or create a counter (the same object for the same name)."""
        return self._get(Counter, name, documentation, labelnames)

    def gauge(
        self,
        name: str,
        documentation: str = "",
        labelnames: Sequence[str] = (),
        *,
        aggregate: str | None = None,
    ) -> Gauge:
        """Get or create a gauge; ``aggregate`` ("sum" when created without one, "max", "min"): how the
        processes of a multi-process server combine it. Given for an existing gauge, it must match."""
        if aggregate is None:
            return self._get(Gauge, name, documentation, labelnames)
        return self._get(Gauge, name, documentation, labelnames, aggregate=aggregate)

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

    def internal_counter(self, name: str, documentation: str) -> Counter:
        """A counter of the layer's own bookkeeping, by ``metric``: exempt from the series guard (it is
        bounded by the number of metrics)."""
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

    def collect(self) -> list[Metric]:
        """The registered metrics, sorted by name (a snapshot; safe while others register), after the
        collect hooks ran."""
        self._run_collect_hooks()
        return [m for _, m in sorted(self._metrics.items())]

    def get(self, name: str) -> Metric | None:
        """The metric registered under ``name``, if any."""
        return self._metrics.get(name)

    def histogram_stats(self, name: str, *, scale: float = 1.0) -> list[HistogramSeriesStats]:
        """Per series of histogram ``name``: {"labels": {...}, count, sum, min, max, mean, p50, p95, p99,
        p999}, values times ``scale`` (1000 for ms from seconds). Empty list if not registered."""
        m = self._metrics.get(name)
        if m is None:
            return []
        if not isinstance(m, Histogram):
            raise ValueError(f"metric {name!r} is a {m.kind}, not a histogram")
        return [
            HistogramSeriesStats(
                **series_stats(child, scale), labels=dict(zip(m.labelnames, child.label_values, strict=False))
            )
            for child in m.children()
        ]

    def get_stats(self) -> dict[str, Mapping[str, object]]:
        """JSON-ready summary, the shape of seed 004's README.

        ``{operation: {count, errors, sum_ms, min_ms, max_ms, mean_ms, avg_ms, p50_ms, p95_ms, p99_ms},
        ..., section: {...}}``. Operations come from the operation views (``timed`` blocks and wrapped
        methods by name, and what the parts registered: ``http METHOD ORIGIN``, ...; see
        ``add_operation_view``); sections from the parts' stats sections (the cache's hit rates per
        namespace under "cache"; see ``add_stats_section``). Quantiles follow
        ``QuantileSketch.quantiles`` (numpy ``method="higher"``, within 1 %). An operation named like a
        section (or "operations") is reported under "operations" instead, so it can't hide the section.
        Collect hooks (the cache's pending counts) run first, so the figures are current. With
        multi-process mode on, this registry's views and sections read the combined series.
        """
        sections = {**default_sections(), **self._sections}
        return self.combined_view()._stats((*default_views(), *self._views), sections)

    def combined_view(self) -> MetricsRegistry:
        """This registry; with multi-process mode on (``infra.metrics.multiprocess``), a new registry
        combining every worker's series. /metrics renders this, and ``get_stats()`` reads it."""
        c = self._combiner
        return self if c is None else c.combined()

    @property
    def multiprocess(self) -> bool:
        """True when reads combine the series of every worker process (``infra.metrics.multiprocess``)."""
        return self._combiner is not None

    def _stats(
        self, views: tuple[OperationView, ...], sections: Mapping[str, StatsSection]
    ) -> dict[str, Mapping[str, object]]:
        self._run_collect_hooks()
        out: dict[str, Mapping[str, object]] = {}
        hidden: dict[str, OperationRow] | None = None  # out["operations"]: rows named like a section
        for view in views:
            for name, entry in self._view_rows(view).items():
                if name in sections or name == "operations":
                    if hidden is None:
                        hidden = {}
                        out["operations"] = hidden
                    hidden[name] = entry
                else:
                    out[name] = entry
        for name, build in sections.items():
            try:
                out[name] = build(self)
            except Exception as exc:  # a part's section never fails a read
                if build not in self._hook_failed:
                    self._hook_failed.add(build)
                    _log.warning("metrics stats section %r failed: %s", name, exc)
        return out

    def add_operation_view(self, view: OperationView) -> None:
        """Show histogram ``view.histogram`` as rows of ``get_stats()`` (see ``OperationView``)."""
        if not isinstance(view, OperationView):
            raise TypeError(f"add_operation_view takes an OperationView, got {type(view).__name__}")
        with self._lock:
            if view not in self._views:
                self._views = (*self._views, view)

    def _view_rows(self, view: OperationView) -> dict[str, OperationRow]:
        hm = self._metrics.get(view.histogram)
        if not isinstance(hm, Histogram):
            return {}
        wanted = view.row_labels
        if not set(wanted) <= set(hm.labelnames):
            return {}
        sketches: dict[str, QuantileSketch] = {}
        errors: dict[str, float] = {}
        for child in hm.children():
            labels = dict(zip(hm.labelnames, child.label_values, strict=False))
            name = view.row_name(labels)
            sk = child.sketch()
            mine = sketches.get(name)
            if mine is None:
                sketches[name] = sk
            else:
                mine.merge(sk)
            if view.error_label is not None and labels.get(view.error_label) in view.error_values:
                errors[name] = errors.get(name, 0.0) + sk.count
        em = self._metrics.get(view.error_counter) if view.error_counter else None
        if isinstance(em, Counter) and set(wanted) <= set(em.labelnames):
            for c in em.children():
                name = view.row_name(dict(zip(em.labelnames, c.label_values, strict=False)))
                errors[name] = errors.get(name, 0.0) + c.get()
        rows: dict[str, OperationRow] = {}
        for name in sorted(set(sketches) | set(errors)):
            sk = sketches.get(name) or QuantileSketch()
            n_err = int(errors.get(name, 0))
            if sk.count == 0 and not n_err:
                continue
            rows[name] = _row(sk, n_err)
        return rows

    def add_stats_section(self, name: str, build: StatsSection) -> None:
        """Show ``build(registry)`` as ``get_stats()[name]`` for this registry (over a section of the
        same name registered for every registry with ``register_stats_section``)."""
        with self._lock:
            self._sections = {**self._sections, name: build}

    # -- collect hooks -------------------------------------------------------------------------------

    def add_collect_hook(self, hook: Callable[[], None]) -> None:
        """Run ``hook()`` before every read (render, ``get_stats``): a part of the layer that counts in
        its own structures on the hot path (the cache) pushes them into its metrics there, so every
        view is current whether or not the process is still making calls. Added once per callable;
        a hook that raises is logged once and skipped (a scrape never fails for it)."""
        with self._lock:
            if hook not in self._hooks:
                self._hooks = (*self._hooks, hook)

    def remove_collect_hook(self, hook: Callable[[], None]) -> None:
        with self._lock:
            self._hooks = tuple(h for h in self._hooks if h != hook)

    def _run_collect_hooks(self) -> None:
        if not self._hooks or getattr(_in_hook, "on", False):
            return
        _in_hook.on = True
        try:
            for hook in self._hooks:
                try:
                    hook()
                except Exception as exc:
                    if hook not in self._hook_failed:
                        self._hook_failed.add(hook)
                        _log.warning("metrics collect hook %r failed: %s", hook, exc)
        finally:
            _in_hook.on = False

    def reset(self) -> None:
        """Zero every series in place (for tests). Bound children kept by callers stay valid."""
        for m in self.collect():
            m.reset()

    def __repr__(self) -> str:
        limit = self.max_series_per_metric
        return f"MetricsRegistry(metrics={len(self._metrics)}, max_series_per_metric={limit})"


_registry = MetricsRegistry()


def timed(operation: str, *, registry: MetricsRegistry | None = None) -> Timer:
    """Time ``operation`` into ``registry`` (default: the process-wide one); see ``_timer``.

    ``with timed("stage1"): ...``, ``async with timed("stage1"): ...``, ``@timed("stage1")``.
    """
    if registry is None:
        registry = _registry
    cls = registry._timed.get(operation)
    if cls is None:
        if not isinstance(operation, str):
            raise TypeError(f"timed(): operation must be a str, got {type(operation).__name__}")
        cls = registry._timer_class(operation)
    return cls()


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork() stays held forever in the child (that thread doesn't
    # exist there), and the first scrape or new series would deadlock. Give every lock a fresh one;
    # the other threads' shards are folded on next use since their Thread objects are dead here.
    for reg in list(_REGISTRIES):
        reg._lock = threading.Lock()
        for m in reg._metrics.values():
            m.after_fork()


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_metrics() -> MetricsRegistry:
    """The process-wide registry every part of the layer reports into."""
    return _registry


def count_failure(name: str, documentation: str, label: str, value: str) -> None:
    """Add 1 to the counter ``name{label=value}``, never raising: for fail-open parts that count their own
    failures (a broken metrics layer must not break the call that reports to it)."""
    with contextlib.suppress(Exception):
        get_metrics().counter(name, documentation, labelnames=(label,)).labels(value).inc()


if os.environ.get("INFRA_METRICS_MULTIPROC_DIR"):
    # A worker of a multi-process server: publish and combine from the start (see multiprocess).
    from . import multiprocess as _multiprocess  # noqa: F401
