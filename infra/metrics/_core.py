"""Counter, Gauge, Histogram and their bound children.

A metric owns its children (one per label-value tuple). ``metric.labels(...)`` resolves a child once;
callers keep it, so the hot path (``child.inc()``, ``child.observe(v)``) does no label work. Counter and
histogram children write per-thread shards (see ``_shards``) and take no lock; gauges, whose ``set`` is
last-writer-wins and cannot be sharded, use a lock (they are not on hot paths).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from itertools import accumulate
from math import floor, log
from numbers import Real
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NoReturn, TypeAlias, TypeVar, cast

from ._layout import KEY_MULT as _MULT
from ._layout import BucketLayout
from ._names import (
    DEFAULT_BUCKETS,
    GAUGE_AGGREGATES,
    OVERFLOW_VALUE,
    check_buckets,
    check_labelnames,
    check_metric_name,
    escape_label_value,
)
from ._shards import CounterCell, HistogramShard, ShardSet
from ._sketch import DEFAULT_RELATIVE_ACCURACY, QuantileSketch

if TYPE_CHECKING:
    from ._registry import MetricsRegistry
    from ._scrape import HistogramScrape
    from ._timer import Timer

__all__ = ["Counter", "CounterChild", "Gauge", "GaugeChild", "Histogram", "HistogramChild", "Metric"]

_INF = math.inf
# Timers append their durations to a list and fold them into the sketch in sorted batches of this many
# (see ``HistogramChild.note``): bounded memory (~65 KB per series) and the sort amortised.
PENDING_FOLD_AT = 2048


class _Child:
    """What every child knows: its label values, their rendered ``{...}`` fragment (``label_text``) and
    what exposition made from them (``render_cache``, filled by the first render: a counter's or gauge's
    line prefix, a histogram series' text template)."""

    __slots__ = ("label_text", "label_values", "render_cache")

    def __init__(self, labelnames: tuple[str, ...], label_values: tuple[str, ...]) -> None:
        self.label_values = label_values
        self.render_cache: list[str] | None = None  # see the class docstring
        # Rendered once: exposition then only concatenates (render speed, see bench_metrics).
        self.label_text = ",".join(
            f'{n}="{escape_label_value(v)}"' for n, v in zip(labelnames, label_values, strict=False)
        )


class CounterChild(_Child):
    """A bound counter series. ``inc`` is lock-free (per-thread cell)."""

    __slots__ = ("_local", "_set", "metric")

    def __init__(self, metric: Counter, label_values: tuple[str, ...]) -> None:
        super().__init__(metric.labelnames, label_values)
        self.metric = metric
        self._set: ShardSet[CounterCell] = ShardSet(CounterCell(None))
        self._local = self._set.local

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0) to the counter.

        Negative amounts raise ValueError (as in prometheus_client). NaN and infinities are dropped and
        counted in ``infra_metrics_invalid_observations_total``: one NaN would otherwise poison the
        counter forever and make every later OpenMetrics scrape invalid.
        """
        if not 0 <= amount < _INF:
            self._bad(amount)
            return
        try:
            self._local.s.value += amount
        except AttributeError:  # first call on this thread
            self._set.add(CounterCell(threading.current_thread())).value += amount

    def _bad(self, amount: float) -> None:
        if amount < 0:
            raise ValueError(f"{self.metric.name}: counters only go up, got inc({amount!r})")
        self.metric._invalid()

    def get(self) -> float:
        """The current total."""
        return self._set.read(lambda cells: math.fsum(c.value for c in cells))

    def reset(self) -> None:
        self._set.clear()

    def after_fork(self) -> None:
        self._set.after_fork()


class GaugeChild(_Child):
    """A bound gauge series (lock-protected: ``set`` is last-writer-wins and can't be sharded)."""

    __slots__ = ("_lock", "_value")

    def __init__(self, metric: Gauge, label_values: tuple[str, ...]) -> None:
        super().__init__(metric.labelnames, label_values)
        self._lock = threading.Lock()
        self._value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value -= amount

    def set(self, value: float) -> None:
        v = float(value)
        with self._lock:
            self._value = v

    def get(self) -> float:
        return self._value

    def reset(self) -> None:
        self.set(0.0)

    def after_fork(self) -> None:
        self._lock = threading.Lock()


class HistogramChild(_Child):
    """A bound histogram series: exact ``le`` counts for Prometheus plus a 1% quantile sketch.

    ``observe`` takes no lock, allocates nothing in the steady state and does one ``log``: it counts
    the value's sketch key in this thread's shard; ``le`` counts are derived at render time (see
    ``BucketLayout``). Values that are negative, NaN or infinite are not observations of a duration or
    size: they are dropped and counted in ``infra_metrics_invalid_observations_total`` (a negative
    ``_sum`` would also be invalid OpenMetrics).
    """

    __slots__ = ("_layout", "_local", "_pending", "_set", "_timer_cls", "metric", "shard_set")

    def __init__(self, metric: Histogram, label_values: tuple[str, ...]) -> None:
        super().__init__(metric.labelnames, label_values)
        self.metric = metric
        self._layout = metric.layout
        self._set: ShardSet[HistogramShard] = ShardSet(HistogramShard(None))
        # The same shards, for the lock-free scrape (``_scrape``), which reads them as a plain attribute.
        self.shard_set = self._set
        self._local = self._set.local
        self._timer_cls: type[Timer] | None = None
        # Durations noted by timers, not yet in a shard: ``list.append`` is atomic (one C call under the
        # GIL, a per-list lock on free-threaded builds), so any thread may append without a lock of ours.
        self._pending: list[float] = []

    def observe(self, value: float) -> None:
        """Record one observation (seconds for durations, bytes for sizes)."""
        try:
            s = self._local.s
            k = floor(log(value) * _MULT)
        except (AttributeError, ValueError, OverflowError, TypeError):
            # First call on this thread, zero, or not a positive finite number.
            self._observe_other(value)
            return
        bins = s.bins
        c = bins.get(k)
        if c is None:
            # A key not seen yet, or a straddling one: no exception on this path (it would cost 5x),
            # since values clustered at an `le` boundary take it on every call.
            self._observe_key(s, value, k)
            return
        bins[k] = c + 1
        s.sum += value
        if value < s.min:
            s.min = value
        if value > s.max:
            s.max = value

    def _observe_key(self, s: HistogramShard, v: float, k: int) -> None:
        inside = self._layout.straddle.get(k)
        if inside is None or (s.floor is not None and k < s.floor):
            s.add_key(k)
        else:
            self._layout.count_split(s, inside, k, (v,))
        s.sum += v
        if v < s.min:
            s.min = v
        if v > s.max:
            s.max = v

    # -- timers: note now, fold in sorted batches ---------------------------------------------------

    def note(self, value: float) -> None:
        """Record a duration a timer measured (a non-negative float from ``perf_counter``).

        The ``with timed(...)`` hot path: one ``list.append`` instead of a sketch update (~0.2 µs
        less per block). Every ``PENDING_FOLD_AT`` notes the batch is folded into the shards, sorted,
        with one ``log`` per distinct sketch key instead of one per value; every read folds what is
        pending first, so what is rendered is exact and complete.
        """
        p = self._pending
        p.append(value)
        if len(p) >= PENDING_FOLD_AT:
            self.fold_pending()

    @property
    def pending(self) -> list[float]:
        """The list timers append their durations to (``note``); one object for the child's life."""
        return self._pending

    def fold_pending(self) -> None:
        """Fold the durations timers noted (``note``) into the shards, in one sorted batch."""
        pending = self._pending
        with self._set.lock:  # one folder at a time; readers and dead-shard folds take it too
            n = len(pending)
            if not n:
                return
            # Slice, then delete the same prefix: values appended meanwhile land past ``n`` and stay.
            batch = pending[:n]
            del pending[:n]
            batch.sort()
            self._layout.fold_sorted(self._set.base, batch)

    def _observe_other(self, value: Any) -> None:
        if type(value) is not float and not isinstance(value, Real):
            raise TypeError(f"{self.metric.name}: observe() takes a real number, got {type(value).__name__}")
        v = float(value)
        if v != v or v == _INF or v < 0.0:
            self.metric._invalid()
            return
        try:
            s = self._local.s
        except AttributeError:
            s = self._set.add(HistogramShard(threading.current_thread()))
        if v == 0.0:
            s.zero += 1
            s.sum += v
            if v < s.min:
                s.min = v
            if v > s.max:
                s.max = v
        else:
            self._observe_key(s, v, floor(log(v) * _MULT))

    def time(self) -> Timer:
        """A context manager / decorator recording its duration here (prometheus_client's ``.time()``)."""
        if self._timer_cls is None:
            from ._timer import timer_class

            self._timer_cls = timer_class(self, None)
        return self._timer_cls()

    # -- reading (render / stats) -----------------------------------------------------------------

    def le_counts(self) -> tuple[list[int], float]:
        """Per-bucket counts (last one is the ``+Inf`` overflow) and the sum, as one snapshot."""
        if self._pending:
            self.fold_pending()
        return self._set.read(self._layout.le_counts)

    def cumulative(self) -> tuple[list[int], float]:
        """Cumulative ``le`` counts (last one equals the count) and the sum."""
        le, total = self.le_counts()
        return list(accumulate(le)), total

    def sketch(self) -> QuantileSketch:
        """A merged copy of this series' sketch (for quantiles); the child keeps counting meanwhile."""

        def read(shards: tuple[HistogramShard, ...]) -> list[tuple[dict[int, int], int, float, float, float]]:
            out = []
            for s in shards:
                bins = dict(s.bins)
                for k, parts in tuple(s.split.items()):
                    bins[k] = bins.get(k, 0) + sum(parts)
                # float(): observe() stores what it was given (numpy scalars too); reads hand out floats.
                out.append((bins, s.zero, float(s.sum), float(s.min), float(s.max)))
            return out

        if self._pending:
            self.fold_pending()
        sk = QuantileSketch(relative_accuracy=DEFAULT_RELATIVE_ACCURACY)
        for bins, zero, total, vmin, vmax in self._set.read(read):
            sk.merge_bins(bins, {}, zero, sum(bins.values()) + zero, total, vmin, vmax)
        return sk

    def state(self) -> HistogramShard:
        """All shards (and pending notes) folded into one new shard: what a snapshot of this series
        carries to another process (``infra.metrics.multiprocess``)."""
        if self._pending:
            self.fold_pending()

        def read(shards: tuple[HistogramShard, ...]) -> HistogramShard:
            out = HistogramShard(None)
            for sh in shards:
                out.fold(sh)
            return out

        return self._set.read(read)

    def merge_state(self, shard: HistogramShard) -> None:
        """Add a shard made by ``state()`` (same buckets) into this series; exact, as shards fold."""
        with self._set.lock:
            self._set.base.fold(shard)

    def reset(self) -> None:
        with self._set.lock:
            del self._pending[:]
        self._set.clear()

    def after_fork(self) -> None:
        self._set.after_fork()


C = TypeVar("C", bound="CounterChild | GaugeChild | HistogramChild")  # a metric's child type


class _Metric(Generic[C]):
    """Shared by Counter, Gauge, Histogram (each over its child type ``C``): label resolution and the
    cardinality guard."""

    kind: ClassVar[str] = "untyped"
    _child_class: ClassVar[type[Any]]  # the class of its children, made as ``_child_class(metric, values)``
    _solo_methods: ClassVar[tuple[str, ...]] = ()  # a label-less metric takes these from its one child

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: MetricsRegistry,
        *,
        guarded: bool = True,
    ) -> None:
        check_metric_name(name)
        self.name = name
        self.documentation = documentation
        self.labelnames = check_labelnames(name, labelnames)
        self._registry = registry
        self._guarded = guarded
        self._children: dict[tuple[str, ...], C] = {}
        self._lock = threading.Lock()
        self._overflow: C | None = None
        self._n_series = 0
        self._dropped: CounterChild | None = None
        if not self.labelnames:
            # Label-less: one child, made now, whose methods the metric exposes directly (no lookup).
            self._solo = self._make_child(())
            self._children[()] = self._solo
            self._n_series = 1
            self._bind_solo(self._solo)

    def _make_child(self, values: tuple[str, ...]) -> C:
        return cast(C, self._child_class(self, values))

    def _bind_solo(self, child: C) -> None:
        for name in self._solo_methods:
            setattr(self, name, getattr(child, name))

    def labels(self, *values: object, **kw: object) -> C:
        """The child for these label values (positional in ``labelnames`` order, or by keyword); each
        value is turned into ``str()``, as prometheus_client's ``labels()`` does."""
        if kw:
            if values:
                raise ValueError(f"{self.name}: pass label values positionally or by keyword, not both")
            if len(kw) != len(self.labelnames) or set(kw) != set(self.labelnames):
                raise ValueError(
                    f"{self.name}: expected labels {self.labelnames!r}, got {tuple(sorted(kw))!r}"
                )
            key = tuple(str(kw[n]) for n in self.labelnames)
        else:
            if len(values) != len(self.labelnames):
                raise ValueError(
                    f"{self.name}: expected {len(self.labelnames)} label value(s) for {self.labelnames!r}, "
                    f"got {len(values)}"
                )
            key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = self._new_series(key)
        return child

    def _new_series(self, key: tuple[str, ...]) -> C:
        dropped = False
        with self._lock:
            child = self._children.get(key)
            if child is not None:
                return child
            limit = self._registry.max_series_per_metric
            if self._guarded and limit is not None and self._n_series >= limit:
                dropped = True
                if self._overflow is None:
                    okey = (OVERFLOW_VALUE,) * len(self.labelnames)
                    self._overflow = self._children.get(okey) or self._make_child(okey)
                    self._children = {**self._children, okey: self._overflow}
                child = self._overflow
            else:
                child = self._make_child(key)
                # Copy-on-write: readers iterate a dict that is never mutated under them.
                children = dict(self._children)
                children[key] = child
                self._children = children
                self._n_series += 1
        if dropped:
            if self._dropped is None:
                self._dropped = self._registry.internal_counter(
                    "infra_metrics_dropped_series_total",
                    "Label sets refused by the per-metric series limit (counted in the __overflow__ series).",
                ).labels(self.name)
            self._dropped.inc()
        return child

    def _invalid(self) -> None:
        self._registry.internal_counter(
            "infra_metrics_invalid_observations_total",
            "Dropped histogram observations (negative, NaN, inf) and counter increments (NaN, inf).",
        ).labels(self.name).inc()

    def series_count(self) -> int:
        """How many series (children) the metric holds."""
        return len(self._children)

    def children(self) -> list[C]:
        """A snapshot of the children (safe to iterate while others create series)."""
        return list(self._children.values())

    def reset(self) -> None:
        for child in self.children():
            child.reset()

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        for child in self.children():
            child.after_fork()

    # Label-less convenience: replaced per instance by the solo child's bound methods.
    def _needs_labels(self, *_: object, **__: object) -> NoReturn:
        raise ValueError(f"{self.name} has labels {self.labelnames!r}: call .labels(...) first")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, labelnames={self.labelnames!r})"


class Counter(_Metric[CounterChild]):
    """A monotonically increasing count (exposed as ``<name>_total``, the suffix added if missing)."""

    kind = "counter"

    _child_class = CounterChild
    _solo_methods = ("inc", "get")

    def inc(self, amount: float = 1.0) -> None:
        self._needs_labels()

    def get(self) -> float:
        self._needs_labels()


class Gauge(_Metric[GaugeChild]):
    """A value that goes up and down (connections open, queue depth).

    ``aggregate`` says how the processes of a multi-process server combine (``infra.metrics.multiprocess``):
    ``"sum"`` (default: connections in use, queue depths add up) or ``"max"`` / ``"min"`` (a value every
    process reads from the same place, as the cache store's entry count, would be counted N times by a sum).
    """

    kind = "gauge"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: MetricsRegistry,
        *,
        aggregate: str = "sum",
        guarded: bool = True,
    ) -> None:
        if aggregate not in GAUGE_AGGREGATES:
            raise ValueError(f"{name}: aggregate must be one of {GAUGE_AGGREGATES}, got {aggregate!r}")
        self.aggregate = aggregate
        super().__init__(name, documentation, labelnames, registry, guarded=guarded)

    _child_class = GaugeChild
    _solo_methods = ("inc", "dec", "set", "get")

    def inc(self, amount: float = 1.0) -> None:
        self._needs_labels()

    def dec(self, amount: float = 1.0) -> None:
        self._needs_labels()

    def set(self, value: float) -> None:
        self._needs_labels()

    def get(self) -> float:
        self._needs_labels()


class Histogram(_Metric[HistogramChild]):
    """Distribution of durations or sizes: ``le`` buckets for Prometheus, a 1% sketch for quantiles."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: MetricsRegistry,
        *,
        buckets: Sequence[float] | None = None,
        guarded: bool = True,
    ) -> None:
        if "le" in labelnames:
            raise ValueError(f"{name}: the label name 'le' is reserved for histogram buckets")
        self.buckets = check_buckets(name, DEFAULT_BUCKETS if buckets is None else buckets)
        self.layout = BucketLayout(self.buckets)
        self.render_plan: HistogramScrape | None = None  # exposition's per-series read plans (``_scrape``)
        super().__init__(name, documentation, labelnames, registry, guarded=guarded)

    _child_class = HistogramChild
    _solo_methods = ("observe", "time")

    def after_fork(self) -> None:
        super().after_fork()
        self.render_plan = None  # a scrape in another thread may have held its lock at fork time

    def observe(self, value: float) -> None:
        self._needs_labels()

    def time(self) -> Timer:
        self._needs_labels()


Metric: TypeAlias = Counter | Gauge | Histogram
"""Any registered metric (what ``MetricsRegistry.collect()`` and ``get()`` return)."""
