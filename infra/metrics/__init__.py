"""Thread-safe metrics registry (PLACEHOLDER IMPLEMENTATION: the API is the contract; internals get replaced).

Contract used by every other part of the layer::

    from infra.metrics import get_metrics, timed
    reg = get_metrics()                                   # process-wide MetricsRegistry
    c = reg.counter("infra_cache_hits_total", "Cache hits.", labelnames=("namespace",))
    hits = c.labels(namespace="inference")                # bound child: resolve labels once, keep it
    hits.inc()                                            # hot path
    h = reg.histogram("infra_http_request_duration_seconds", "...", labelnames=("origin", "method", "code"))
    h.labels("http://127.0.0.1:8080", "GET", "2xx").observe(0.012)
    g = reg.gauge("infra_http_active_connections", "...", labelnames=("origin",))
    g.labels(origin).set(3); g.labels(origin).inc(); g.labels(origin).dec()
    with timed("stage1_emotion_scoring"): ...            # also async with / decorator
    reg.get_stats()                                       # JSON-ready dict (seed 004 shape)

Registering the same name twice returns the same metric (so modules can register at import or first use).
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["Counter", "Gauge", "Histogram", "MetricsRegistry", "get_metrics", "timed"]


class _Child:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0.0
        self.samples: list[float] = []

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        with self._lock:
            self.value -= amount

    def set(self, value: float) -> None:
        self.value = value

    def observe(self, value: float) -> None:
        with self._lock:
            self.samples.append(value)


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], _Child] = {}
        self._lock = threading.Lock()

    def labels(self, *values: Any, **kw: Any) -> _Child:
        key = tuple(str(v) for v in values) if values else tuple(str(kw[n]) for n in self.labelnames)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = _Child()
        return child

    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)

    def observe(self, value: float) -> None:
        self.labels().observe(value)

    def set(self, value: float) -> None:
        self.labels().set(value)


class Counter(_Metric):
    kind = "counter"


class Gauge(_Metric):
    kind = "gauge"


class Histogram(_Metric):
    kind = "histogram"


class MetricsRegistry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def _get(self, cls: type[_Metric], name: str, documentation: str, labelnames: tuple[str, ...]) -> Any:
        with self._lock:
            m = self._metrics.get(name)
            if m is None:
                m = self._metrics[name] = cls(name, documentation, labelnames)
            return m

    def counter(self, name: str, documentation: str = "", labelnames: tuple[str, ...] = ()) -> Counter:
        return self._get(Counter, name, documentation, labelnames)  # type: ignore[no-any-return]

    def gauge(self, name: str, documentation: str = "", labelnames: tuple[str, ...] = ()) -> Gauge:
        return self._get(Gauge, name, documentation, labelnames)  # type: ignore[no-any-return]

    def histogram(self, name: str, documentation: str = "", labelnames: tuple[str, ...] = ()) -> Histogram:
        return self._get(Histogram, name, documentation, labelnames)  # type: ignore[no-any-return]

    def get_stats(self) -> dict[str, Any]:
        return {}


_registry = MetricsRegistry()


def get_metrics() -> MetricsRegistry:
    return _registry


class timed:  # noqa: N801 - used like a function
    def __init__(self, operation: str) -> None:
        self.operation = operation

    def __enter__(self) -> timed:
        return self

    def __exit__(self, *exc: object) -> None:
        return None
