"""The dashboard's one adapter to the metrics: which series it draws and how they are read.

Everything the /dashboard page shows comes through here, from the registry's public reading API
(``combined_view``, ``collect``, ``children()``, ``child.get()``, ``child.sketch()``, ``get_stats()``).
It is the one module of the layer that knows the parts' metric names (the cache's it takes from
``infra.cache.observability``, where the cache declares them): choosing what a page draws is its job,
as choosing what ``get_stats()`` shows is each part's. If the names or the stats' shape change, this
module is the one to adjust. Under several
worker processes (``infra.metrics.multiprocess``) it reads the combined view, so every worker's
dashboard shows the whole fleet.

Two products:

- ``ColumnSampler`` turns the registry into one flat history row ``{column: number}`` every sample.
  Counters are kept cumulative (the page derives rates from differences, so nothing is lost between
  refreshes); latency series keep their cumulative ``calls`` and ``errors`` plus p50/p95/p99 of the
  calls *in that interval*, from the difference of two quantile sketches (1% relative accuracy, the
  same sketch ``get_stats()`` reads), so "which stage's p95 moved" shows when it moved.
- ``current_view`` is what the tiles show right now: hit rate per namespace exactly as ``get_stats()``
  reports it, entries, bytes, compute seconds saved, breaker states.

Column names are ``kind|group|label``; the page parses them (``dashboard.js``, ``parseColumn``).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..cache import observability as cache_names
from ..metrics import Counter, Gauge, Histogram, MetricsRegistry, QuantileSketch

__all__ = ["GROUPS", "ColumnSampler", "current_view"]

# Latency groups, in page order: (group id, heading).
GROUPS: tuple[tuple[str, str], ...] = (
    ("stage", "LLM stages and timed operations"),
    ("llm", "Ollama calls"),
    ("http", "HTTP origins"),
    ("method", "Wrapped methods"),
    ("db", "Database statements"),
)
_HTTP_ERROR_CLASSES = frozenset({"5xx", "error", "refused"})  # refused: by the breaker
QUANTILES = (0.5, 0.95, 0.99)


@dataclass(slots=True)
class _Window:
    """A latency series' cumulative sketch as of the previous sample (to difference against)."""

    bins: dict[int, int]
    zero: int
    count: int
    total: float


def _sum_by(m: Any, keep: Iterable[str]) -> dict[tuple[str, ...], float]:
    """A counter or gauge's values summed over every label not in ``keep``."""
    idx = [m.labelnames.index(k) for k in keep]
    out: dict[tuple[str, ...], float] = {}
    for child in m.children():
        key = tuple(child.label_values[i] for i in idx)
        out[key] = out.get(key, 0.0) + child.get()
    return out


def _current(registry: MetricsRegistry) -> dict[str, Any]:
    """The metrics to read, by name: the combined view of every worker where multi-process mode is
    on, after the collect hooks ran (``collect()`` runs them: the cache's pending counts are in)."""
    return {m.name: m for m in registry.combined_view().collect()}


def _counter(reg: dict[str, Any], name: str, keep: Iterable[str]) -> dict[tuple[str, ...], float]:
    m = reg.get(name)
    if not isinstance(m, (Counter, Gauge)) or not set(keep) <= set(m.labelnames):
        return {}
    return _sum_by(m, keep)


def _latency_series(reg: dict[str, Any]) -> dict[tuple[str, str], tuple[list[QuantileSketch], float]]:
    """``(group, label) -> (the sketches that make it up, errors so far)`` for every timed operation."""
    out: dict[tuple[str, str], tuple[list[QuantileSketch], float]] = {}

    def add(group: str, label: str, sketch: QuantileSketch | None, errors: float = 0.0) -> None:
        sketches, err = out.get((group, label), ([], 0.0))
        if sketch is not None:
            sketches.append(sketch)
        out[(group, label)] = (sketches, err + errors)

    op_errors = _counter(reg, "infra_operation_errors_total", ("operation",))
    m = reg.get("infra_operation_duration_seconds")
    if isinstance(m, Histogram):
        for child in m.children():
            op = child.label_values[0]
            # integrate's wrapper names its operations Class.method; seed 004's stages are plain names.
            add("method" if "." in op else "stage", op, child.sketch(), op_errors.get((op,), 0.0))
    m = reg.get("infra_ollama_request_duration_seconds")
    if isinstance(m, Histogram):
        i_model, i_op = m.labelnames.index("model"), m.labelnames.index("operation")
        for child in m.children():  # hits and misses of one model and operation are one series
            add("llm", f"{child.label_values[i_op]} {child.label_values[i_model]}", child.sketch())
        for (model, op), n in _counter(reg, "infra_ollama_errors_total", ("model", "operation")).items():
            add("llm", f"{op} {model}", None, n)
    m = reg.get("infra_http_request_duration_seconds")
    if isinstance(m, Histogram):
        i_origin, i_method, i_code = (m.labelnames.index(k) for k in ("origin", "method", "code"))
        for child in m.children():
            lv = child.label_values
            sk = child.sketch()
            add(
                "http",
                f"{lv[i_method]} {lv[i_origin]}",
                sk,
                sk.count if lv[i_code] in _HTTP_ERROR_CLASSES else 0,
            )
    m = reg.get("infra_db_query_duration_seconds")
    if isinstance(m, Histogram) and "statement" in m.labelnames:
        i_st = m.labelnames.index("statement")
        i_out = m.labelnames.index("outcome") if "outcome" in m.labelnames else None
        for child in m.children():
            sk = child.sketch()
            failed = i_out is not None and child.label_values[i_out] not in ("ok", "success")
            add("db", child.label_values[i_st], sk, sk.count if failed else 0)
    return out


def _merged(sketches: list[QuantileSketch]) -> QuantileSketch:
    if len(sketches) == 1:
        return sketches[0]
    total = QuantileSketch()
    for sk in sketches:
        total.merge(sk)
    return total


class ColumnSampler:
    """Callable giving one history row per call; remembers the last sketches for interval quantiles."""

    def __init__(self, registry: MetricsRegistry) -> None:
        # Weak: the history ring is kept per registry and must not keep a test's registry alive.
        self._registry = weakref.ref(registry)
        self._last: dict[tuple[str, str], _Window] = {}

    def __call__(self) -> dict[str, float] | None:
        registry = self._registry()
        if registry is None:
            return None  # the registry is gone: the ring stops sampling
        reg = _current(registry)
        row: dict[str, float] = {}
        for kind, name in (
            ("hits", cache_names.HITS),
            ("misses", cache_names.MISSES),
            ("cache_errors", cache_names.ERRORS),
            ("saved", cache_names.COMPUTE_SECONDS_SAVED),
            ("entries", cache_names.ENTRIES),
            ("bytes", cache_names.BYTES),
        ):
            for (ns,), v in _counter(reg, name, ("namespace",)).items():
                row[f"{kind}|cache|{ns}"] = v
        for (origin,), v in _counter(reg, "infra_http_breaker_state", ("origin",)).items():
            row[f"breaker|http|{origin}"] = v
        for (origin,), v in _counter(reg, "infra_http_retry_budget_denied_total", ("origin",)).items():
            row[f"denied|http|{origin}"] = v
        for (group, label), (sketches, errors) in _latency_series(reg).items():
            sk = _merged(sketches) if sketches else QuantileSketch()
            row[f"calls|{group}|{label}"] = sk.count
            row[f"errors|{group}|{label}"] = errors
            qs = self._interval_quantiles((group, label), sk)
            if qs is not None:
                for q, v in zip(("p50", "p95", "p99"), qs, strict=True):
                    row[f"{q}|{group}|{label}"] = v * 1000.0  # the page shows milliseconds
        return row

    def _interval_quantiles(self, key: tuple[str, str], sk: QuantileSketch) -> list[float] | None:
        """p50/p95/p99 of the values added since the last sample; None if there were none."""
        last = self._last.get(key)
        self._last[key] = _Window(dict(sk.bins), sk.zero, sk.count, sk.sum)
        if last is None:
            window = sk  # the first sample of a series covers everything so far
        else:
            if sk.count <= last.count:
                return None
            window = QuantileSketch(relative_accuracy=sk.relative_accuracy)
            diff = {k: c - last.bins.get(k, 0) for k, c in sk.bins.items()}
            diff = {k: c for k, c in diff.items() if c > 0}
            zero = max(0, sk.zero - last.zero)
            # min/max of the interval are unknown: pass bounds that never clamp a quantile.
            window.merge_bins(diff, {}, zero, sum(diff.values()) + zero, sk.sum - last.total, 0.0, sk.max)
        if window.count == 0:
            return None
        return window.quantiles(QUANTILES)


def current_view(registry: MetricsRegistry) -> dict[str, Any]:
    """What the tiles show now: get_stats()'s cache section as it stands, plus the store's gauges."""
    stats = registry.get_stats()
    cache = stats.get(cache_names.SECTION) or {}
    reg = _current(registry)
    saved = _counter(reg, cache_names.COMPUTE_SECONDS_SAVED, ("namespace",))
    entries = _counter(reg, cache_names.ENTRIES, ("namespace",))
    nbytes = _counter(reg, cache_names.BYTES, ("namespace",))
    namespaces = sorted(set(cache) | {k[0] for k in (*saved, *entries, *nbytes)})
    return {
        "cache": {
            ns: {
                "hits": _row(cache, ns).get("hits", 0),
                "misses": _row(cache, ns).get("misses", 0),
                # get_stats() reports a fraction (0.8): passed on as it is, the page shows 80.0 %.
                "hit_rate": _row(cache, ns).get("hit_rate"),
                "compute_seconds_saved": saved.get((ns,)),
                "entries": entries.get((ns,)),
                "bytes": nbytes.get((ns,)),
            }
            for ns in namespaces
        },
        "breakers": {o: v for (o,), v in _counter(reg, "infra_http_breaker_state", ("origin",)).items()},
        "multiprocess": registry.multiprocess,
        "groups": [{"id": g, "title": t} for g, t in GROUPS],
    }


def _row(section: Mapping[str, object], key: str) -> Mapping[str, object]:
    """``section[key]`` when it is a mapping (a namespace's row of the cache's section), else empty."""
    row = section.get(key)
    return row if isinstance(row, Mapping) else {}
