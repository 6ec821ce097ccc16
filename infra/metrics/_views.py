"""Operation views: how ``get_stats()`` turns duration histograms into one row per operation.

Every operation the layer runs is timed into some histogram (``timed`` blocks and wrapped methods into
``infra_operation_duration_seconds{operation}``; the parts' calls into their own). A view names one
such histogram, how its labels make a row name (``"http {method} {origin}"``: the series of all status
classes of one origin and method merge into one row through their sketches, exactly), and where its
errors are counted: in series whose label says so (``outcome="error"``) or in a counter with the same
key labels. The registry holds the views as data, so a part of the layer or an application adds its
own without the registry knowing its metrics.

A part whose numbers are not operation rows (the cache's hit rates per namespace) contributes a *stats
section*: a function from a registry to one JSON-ready mapping, shown under its name in ``get_stats()``.
What a part declares with ``register_operation_view`` / ``register_stats_section`` shows in every
registry of the process (the part declares it once, where it names its metrics: the cache in
``infra.cache.observability``); ``MetricsRegistry.add_operation_view`` / ``add_stats_section`` add to
one registry only. The layer's own view (``timed`` blocks) is the only one defined here; HTTP's, Ollama's
and asyncpg's are declared beside the histograms they read (``infra.http._metrics``,
``infra.ollama._handles``, ``infra.db.timing``).
"""

from __future__ import annotations

import string
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._registry import MetricsRegistry

__all__ = [
    "OPERATION_DURATION",
    "OPERATION_ERRORS",
    "OperationView",
    "StatsSection",
    "default_sections",
    "default_views",
    "register_operation_view",
    "register_stats_section",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class OperationView:
    """One histogram shown as rows of ``get_stats()``.

    ``row``: a ``str.format`` template over the histogram's label names (``"{operation}"``);
    ``error_label`` / ``error_values``: series whose ``error_label`` has one of ``error_values`` are
    failed calls (they count in ``count`` and in ``errors``); ``error_counter``: a counter of failed
    calls whose labels include every name ``row`` uses (the calls it counts are not in the histogram).
    """

    histogram: str
    row: str
    error_label: str | None = None
    error_values: frozenset[str] = field(default_factory=frozenset)
    error_counter: str | None = None

    def __post_init__(self) -> None:
        if (self.error_label is None) != (not self.error_values):
            raise ValueError(f"view of {self.histogram}: error_label and error_values go together")

    @property
    def row_labels(self) -> tuple[str, ...]:
        """The label names the row template uses."""
        return tuple(f for _, f, _, _ in string.Formatter().parse(self.row) if f)

    def row_name(self, labels: Mapping[str, str]) -> str:
        return self.row.format_map(labels)


StatsSection = Callable[["MetricsRegistry"], Mapping[str, object]]
"""Builds one section of ``get_stats()`` from a registry's series (read through its public API)."""

OPERATION_DURATION = "infra_operation_duration_seconds"  # what ``timed`` records
OPERATION_ERRORS = "infra_operation_errors_total"  # what ``timed`` counts when the timed code raises

_lock = threading.Lock()
# The layer's own metric: ``timed`` blocks and wrapped methods, one row per operation.
_views: tuple[OperationView, ...] = (
    OperationView(
        histogram=OPERATION_DURATION,
        row="{operation}",
        error_counter=OPERATION_ERRORS,
    ),
)
_sections: dict[str, StatsSection] = {}


def register_operation_view(view: OperationView) -> None:
    """Show ``view`` in ``get_stats()`` of every registry of the process (once per view)."""
    if not isinstance(view, OperationView):
        raise TypeError(f"register_operation_view takes an OperationView, got {type(view).__name__}")
    global _views
    with _lock:
        if view not in _views:
            _views = (*_views, view)


def register_stats_section(name: str, build: StatsSection) -> None:
    """Show ``build(registry)`` as ``get_stats()[name]`` in every registry of the process (the last
    registration of a name wins, so a module re-imported in a test replaces its own section)."""
    with _lock:
        _sections[name] = build


def default_views() -> tuple[OperationView, ...]:
    """The views every registry shows (the layer's own and those the parts registered)."""
    return _views


def default_sections() -> dict[str, StatsSection]:
    """The sections every registry shows, by name (a copy)."""
    return dict(_sections)
