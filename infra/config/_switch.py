"""The ``metrics.enabled`` switch as the parts read it: the one decision point for "record into the registry".

Every part that exports metrics builds its handles (families and bound children) once, off its hot path,
through ``part_metrics()``: the process registry while the switch is on, else ``NULL_METRICS``, whose
families and children accept the same calls and record nothing, so no series (not even a family's
``# HELP`` line) reaches ``/metrics``. A part whose export has its own work to skip (the cache's flush
and store gauges) asks ``metrics_enabled()`` once, at construction, instead. A part's own counters
(``Cache.get_stats()``, ``BatcherStats``, the Ollama client's hit / miss counts) are its state, not
metrics: they keep counting either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infra.config._model import PerfConfig
    from infra.metrics import MetricsRegistry

__all__ = ["NULL_METRICS", "NullRegistry", "metrics_enabled", "part_metrics"]


def metrics_enabled(config: PerfConfig | None = None) -> bool:
    """Whether the layer records metrics: ``enabled`` and ``metrics.enabled`` of ``config`` (the
    process-wide config when None; ``PERF_METRICS_ENABLED=0`` or ``PERF_ENABLED=0`` turn it off). An unusable
    file already gives the layer off (``get_config``'s policy); only an unexpected error inside the loader
    leaves metrics on here, so a bug of ours never takes a part's metrics away silently."""
    if config is None:
        try:
            from infra.config._loader import get_config

            config = get_config()
        except Exception:
            return True
    return bool(config.enabled and config.metrics.enabled)


class NullRegistry:
    """Stands in for the registry and for every family and bound child it hands out: nothing is recorded.

    Its methods take any arguments: a part holds ``MetricsRegistry | NullRegistry``, so mypy checks each
    call against the registry's own signatures; the stand-in only has to accept what those accept."""

    __slots__ = ()

    def family(self, *args: object, **kw: object) -> NullRegistry:
        """A family (``counter`` / ``gauge`` / ``histogram``) or a bound child (``labels``): itself."""
        return self

    def record(self, *args: object) -> None:
        """``inc`` / ``dec`` / ``set`` / ``observe``: nothing."""

    counter = gauge = histogram = labels = family
    inc = dec = set = observe = record


NULL_METRICS = NullRegistry()


def part_metrics(config: PerfConfig | None = None) -> MetricsRegistry | NullRegistry:
    """Where a part builds its metric handles: the process registry, or ``NULL_METRICS`` while
    ``metrics_enabled(config)`` is false."""
    if not metrics_enabled(config):
        return NULL_METRICS
    from infra.metrics import get_metrics

    return get_metrics()
