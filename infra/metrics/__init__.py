"""Thread-safe metrics registry: counters, gauges, histograms with a 1% quantile sketch, one timer.

Contract used by every other part of the layer::

    from infra.metrics import get_metrics, timed
    reg = get_metrics()                                   # process-wide MetricsRegistry
    c = reg.counter("app_cache_hits_total", "Cache hits.", labelnames=("namespace",))
    hits = c.labels(namespace="inference")                # bound child: resolve labels once, keep it
    hits.inc()                                            # hot path
    h = reg.histogram("app_request_duration_seconds", "...", labelnames=("origin", "method", "code"))
    h.labels("http://127.0.0.1:8080", "GET", "2xx").observe(0.012)
    g = reg.gauge("app_active_connections", "...", labelnames=("origin",))
    g.labels(origin).set(3); g.labels(origin).inc(); g.labels(origin).dec()
    with timed("stage1_emotion_scoring"): ...            # also async with / decorator
    reg.get_stats()                                       # JSON-ready dict (seed 004 shape), current:
                                                          # collect hooks run before every read

Registering the same name twice returns the same metric (so modules can register at import or first use);
the same name with another type, other label names or other buckets raises ValueError.
A label-less metric takes ``inc`` / ``set`` / ``observe`` directly.

Design (details in the submodules): bound children write per-thread shards, so ``inc`` and ``observe``
take no lock (``_shards``); histograms keep fixed ``le`` buckets for Prometheus plus a DDSketch-style
log-bucketed sketch with 1% relative accuracy, bounded memory and exact merging (``_sketch``);
exposition renders Prometheus text 0.0.4, OpenMetrics 1.0.0 and JSON from a snapshot (``exposition``).
Every read runs the registry's collect hooks first (``add_collect_hook``: the cache folds its pending hits
there), so what is read is current. ``get_stats()`` rows come from operation views (``OperationView``)
and its sections from the parts (``register_stats_section``: the cache's in ``infra.cache.observability``);
the layer itself knows no part's metric names.
With ``INFRA_METRICS_MULTIPROC_DIR`` set, reads combine every worker process (``infra.metrics.multiprocess``).
"""

from __future__ import annotations

from ._core import Counter, CounterChild, Gauge, GaugeChild, Histogram, HistogramChild, Metric
from ._names import DEFAULT_BUCKETS
from ._registry import (
    DEFAULT_MAX_SERIES_PER_METRIC,
    HistogramSeriesStats,
    MetricsRegistry,
    OperationRow,
    SeriesStats,
    count_failure,
    get_metrics,
    timed,
)
from ._sketch import QuantileSketch
from ._timer import Timer
from ._views import OperationView, StatsSection, register_operation_view, register_stats_section

__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_MAX_SERIES_PER_METRIC",
    "Counter",
    "CounterChild",
    "Gauge",
    "GaugeChild",
    "Histogram",
    "HistogramChild",
    "HistogramSeriesStats",
    "Metric",
    "MetricsRegistry",
    "OperationRow",
    "OperationView",
    "QuantileSketch",
    "SeriesStats",
    "StatsSection",
    "Timer",
    "count_failure",
    "get_metrics",
    "register_operation_view",
    "register_stats_section",
    "timed",
]
