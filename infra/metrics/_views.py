"""Operation views: how ``get_stats()`` turns duration histograms into one row per operation.

Every operation the layer runs is timed into some histogram (``timed`` blocks and wrapped methods into
``infra_operation_duration_seconds{operation}``, HTTP calls into ``infra_http_request_duration_seconds``,
Ollama calls, asyncpg statements). A view names one such histogram, how its labels make a row name
(``"http {method} {origin}"``: the series of all status classes of one origin and method merge into one
row through their sketches, exactly), and where its errors are counted: in series whose label says so
(``outcome="error"``) or in a counter with the same key labels. The registry holds the views as data
(``MetricsRegistry.add_operation_view``), so a part of the layer or an application adds its own without
the registry knowing its metrics.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["DEFAULT_VIEWS", "OperationView"]


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


DEFAULT_VIEWS: tuple[OperationView, ...] = (
    OperationView(
        histogram="infra_operation_duration_seconds",
        row="{operation}",
        error_counter="infra_operation_errors_total",
    ),
    # An HTTP call that ended in a transport error or a 5xx answer (after retries) failed.
    OperationView(
        histogram="infra_http_request_duration_seconds",
        row="http {method} {origin}",
        error_label="code",
        error_values=frozenset({"5xx", "error"}),
    ),
    OperationView(
        histogram="infra_ollama_request_duration_seconds",
        row="ollama {operation} {model}",
        error_counter="infra_ollama_errors_total",
    ),
    OperationView(
        histogram="infra_db_query_duration_seconds",
        row="db {statement}",
        error_label="outcome",
        error_values=frozenset({"error"}),
    ),
)
