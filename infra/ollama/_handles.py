"""Metric children for one (model, operation), resolved once and kept off the hot path."""

from __future__ import annotations

from typing import Any

from infra.config._switch import NULL_METRICS, part_metrics
from infra.metrics import OperationView, register_operation_view

__all__ = ["Handles"]

# get_stats() shows each (operation, model) as a row; failed calls are counted in the errors counter.
register_operation_view(
    OperationView(
        histogram="infra_ollama_request_duration_seconds",
        row="ollama {operation} {model}",
        error_counter="infra_ollama_errors_total",
    )
)


_DURATION = "infra_ollama_request_duration_seconds"
_DURATION_HELP = "Client-measured Ollama call latency, by model, operation and cache result."
_MODEL_OP = ("model", "operation")
_NS_OP = ("namespace", "operation")
#: The metric child each attribute holds: (kind, name, help, label names), labelled by this (model, op).
_FAMILIES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "ttft": (
        "histogram",
        "infra_ollama_time_to_first_token_seconds",
        "Client-measured time to the first streamed chunk.",
        _MODEL_OP,
    ),
    "tps": (
        "histogram",
        "infra_ollama_tokens_per_second",
        "Generation speed reported by Ollama (eval_count / eval_duration).",
        ("model",),
    ),
    "load": (
        "histogram",
        "infra_ollama_load_duration_seconds",
        "load_duration reported by Ollama.",
        ("model",),
    ),
    "reloads": (
        "counter",
        "infra_ollama_unexpected_reloads_total",
        "Calls where a model this client saw loaded was loaded again.",
        ("model",),
    ),
    "hits": ("counter", "infra_ollama_cache_hits_total", "Ollama responses served from the cache.", _NS_OP),
    "misses": (
        "counter",
        "infra_ollama_cache_misses_total",
        "Cacheable Ollama calls not found in the cache.",
        _NS_OP,
    ),
    "retries": ("counter", "infra_ollama_retries_total", "Retries before the first token.", _MODEL_OP),
    "errors": ("counter", "infra_ollama_errors_total", "Ollama calls that raised.", _MODEL_OP),
    "coalesced": (
        "counter",
        "infra_ollama_coalesced_total",
        "Identical concurrent calls served by one request in flight (single-flight).",
        _NS_OP,
    ),
}


class Handles:
    """Metric children for one (model, operation), resolved once and kept off the hot path."""

    __slots__ = (
        "coalesced",
        "duration_hit",
        "duration_miss",
        "errors",
        "hits",
        "load",
        "misses",
        "n_coalesced",
        "n_hits",
        "n_misses",
        "reloads",
        "retries",
        "tps",
        "ttft",
    )

    def __init__(self, model: str, op: str, namespace: str) -> None:
        self.n_hits = 0
        self.n_misses = 0
        self.n_coalesced = 0
        values = {"model": model, "operation": op, "namespace": namespace}
        try:
            m = part_metrics()  # NULL_METRICS while metrics.enabled is false: the n_* counts stay
            dur = m.histogram(_DURATION, _DURATION_HELP, labelnames=("model", "operation", "cache"))
            self.duration_hit: Any = dur.labels(model, op, "hit")
            self.duration_miss: Any = dur.labels(model, op, "miss")
            for attr, (kind, name, doc, labels) in _FAMILIES.items():
                make: Any = m.histogram if kind == "histogram" else m.counter
                family = make(name, doc, labelnames=labels)
                setattr(self, attr, family.labels(*(values[label] for label in labels)))
        except Exception:  # metrics must never break a call
            noop = NULL_METRICS
            self.duration_hit = self.duration_miss = noop
            for attr in _FAMILIES:
                setattr(self, attr, noop)

    # the metric children, set from _FAMILIES in __init__
    ttft: Any
    tps: Any
    load: Any
    reloads: Any
    hits: Any
    misses: Any
    retries: Any
    errors: Any
    coalesced: Any

    def hit(self, n: int = 1) -> None:
        self.n_hits += n
        self.hits.inc(n)

    def miss(self, n: int = 1) -> None:
        self.n_misses += n
        self.misses.inc(n)

    def coalesce(self) -> None:
        self.n_coalesced += 1
        self.coalesced.inc()
