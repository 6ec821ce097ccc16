"""Metric children for one (model, operation), resolved once and kept off the hot path."""

from __future__ import annotations

from typing import Any

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


class _Noop:
    """Stands in for a metric child when the metrics layer fails (fail open)."""

    def inc(self, amount: float = 1.0) -> None: ...
    def observe(self, value: float) -> None: ...
    def set(self, value: float) -> None: ...


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
        try:
            from infra.metrics import get_metrics

            m = get_metrics()
            dur = m.histogram(
                "infra_ollama_request_duration_seconds",
                "Client-measured Ollama call latency, by model, operation and cache result.",
                labelnames=("model", "operation", "cache"),
            )
            self.duration_hit: Any = dur.labels(model, op, "hit")
            self.duration_miss: Any = dur.labels(model, op, "miss")
            self.ttft: Any = m.histogram(
                "infra_ollama_time_to_first_token_seconds",
                "Client-measured time to the first streamed chunk.",
                labelnames=("model", "operation"),
            ).labels(model, op)
            self.tps: Any = m.histogram(
                "infra_ollama_tokens_per_second",
                "Generation speed reported by Ollama (eval_count / eval_duration).",
                labelnames=("model",),
            ).labels(model)
            self.load: Any = m.histogram(
                "infra_ollama_load_duration_seconds",
                "load_duration reported by Ollama.",
                labelnames=("model",),
            ).labels(model)
            self.reloads: Any = m.counter(
                "infra_ollama_unexpected_reloads_total",
                "Calls where a model this client saw loaded was loaded again.",
                labelnames=("model",),
            ).labels(model)
            self.hits: Any = m.counter(
                "infra_ollama_cache_hits_total",
                "Ollama responses served from the cache.",
                labelnames=("namespace", "operation"),
            ).labels(namespace, op)
            self.misses: Any = m.counter(
                "infra_ollama_cache_misses_total",
                "Cacheable Ollama calls not found in the cache.",
                labelnames=("namespace", "operation"),
            ).labels(namespace, op)
            self.retries: Any = m.counter(
                "infra_ollama_retries_total",
                "Retries before the first token.",
                labelnames=("model", "operation"),
            ).labels(model, op)
            self.errors: Any = m.counter(
                "infra_ollama_errors_total", "Ollama calls that raised.", labelnames=("model", "operation")
            ).labels(model, op)
            self.coalesced: Any = m.counter(
                "infra_ollama_coalesced_total",
                "Identical concurrent calls served by one request in flight (single-flight).",
                labelnames=("namespace", "operation"),
            ).labels(namespace, op)
        except Exception:  # metrics must never break a call
            noop = _Noop()
            self.duration_hit = self.duration_miss = self.ttft = self.tps = self.load = noop
            self.reloads = self.hits = self.misses = self.retries = self.errors = self.coalesced = noop

    def hit(self, n: int = 1) -> None:
        self.n_hits += n
        self.hits.inc(n)

    def miss(self, n: int = 1) -> None:
        self.n_misses += n
        self.misses.inc(n)

    def coalesce(self) -> None:
        self.n_coalesced += 1
        self.coalesced.inc()
