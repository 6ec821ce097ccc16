"""What the cache shows of itself in the metrics: its metric names and its ``get_stats()`` section.

The metrics layer knows no part's names; the cache declares here, once, the series it exports (see
``infra.cache.stats`` for how they are counted and pushed) and the section it adds to
``get_metrics().get_stats()``: per namespace, ``{hits, misses, hit_rate, errors,
compute_seconds_saved}`` read from those counters, so it equals what /metrics shows. Importing this
module registers the section for every registry of the process (``register_stats_section``);
``infra.cache.stats`` imports it, and so does the server (a process that serves a fleet's numbers
without having made a cache call of its own).
"""

from __future__ import annotations

from collections.abc import Mapping

from infra.metrics import Counter, MetricsRegistry, register_stats_section

__all__ = [
    "BYTES",
    "COMPUTE_SECONDS_SAVED",
    "ENTRIES",
    "ERRORS",
    "EVICTIONS",
    "HITS",
    "LOOKUP_DURATION",
    "MISSES",
    "SECTION",
    "UNCACHEABLE",
    "cache_section",
    "hit_rate",
]

HITS = "infra_cache_hits_total"
MISSES = "infra_cache_misses_total"
ERRORS = "infra_cache_errors_total"  # {namespace, reason}
UNCACHEABLE = "infra_cache_uncacheable_total"
COMPUTE_SECONDS_SAVED = "infra_cache_compute_seconds_saved_total"
EVICTIONS = "infra_cache_evictions_total"  # {tier}
ENTRIES = "infra_cache_entries"  # gauge, combined across workers by max
BYTES = "infra_cache_bytes"  # gauge, combined across workers by max
LOOKUP_DURATION = "infra_cache_lookup_duration_seconds"  # {namespace, tier}, sampled
SECTION = "cache"  # the key of the cache's section in get_stats()


def hit_rate(hits: float, misses: float) -> float:
    """Hits over lookups as a fraction (0.8 for 80 %), 0.0 before any lookup: the one unit every view uses."""
    total = hits + misses
    return round(hits / total, 6) if total else 0.0


def _by_namespace(registry: MetricsRegistry, name: str) -> dict[str, float]:
    """Counter ``name`` summed per namespace (over its other labels); empty if it isn't there."""
    m = registry.get(name)
    if not isinstance(m, Counter) or "namespace" not in m.labelnames:
        return {}
    i = m.labelnames.index("namespace")
    acc: dict[str, float] = {}
    for c in m.children():
        ns = c.label_values[i]
        acc[ns] = acc.get(ns, 0.0) + c.get()
    return acc


def cache_section(registry: MetricsRegistry) -> dict[str, Mapping[str, float | int]]:
    """``get_stats()["cache"]``: per namespace, hits, misses, hit_rate, errors, compute seconds saved."""
    hits, misses = _by_namespace(registry, HITS), _by_namespace(registry, MISSES)
    errors, saved = _by_namespace(registry, ERRORS), _by_namespace(registry, COMPUTE_SECONDS_SAVED)
    out: dict[str, Mapping[str, float | int]] = {}
    for ns in sorted(set(hits) | set(misses) | set(errors)):
        h, m = int(hits.get(ns, 0)), int(misses.get(ns, 0))
        out[ns] = {
            "hits": h,
            "misses": m,
            "hit_rate": hit_rate(h, m),
            "errors": int(errors.get(ns, 0)),
            "compute_seconds_saved": round(saved.get(ns, 0.0), 6),
        }
    return out


register_stats_section(SECTION, cache_section)
