"""Per-statement query timing for asyncpg, through its query-logger hook.

asyncpg (>= 0.29) calls a connection's query loggers after every query with a ``LoggedQuery``
(``query``, ``elapsed`` seconds, ``exception``, ...). ``StatementTimer`` is such a logger: it
turns the SQL text into a bounded statement label and observes the elapsed time into
``infra_db_query_duration_seconds{statement, outcome}``.

Labels: SQL the caller named (``timer.name(sql, "neighbours")`` or ``Query(..., label=...)``)
uses that name; other SQL gets ``<verb>_<8 hex of sha1(normalised SQL)>``, e.g. ``select_3fa2c1d0``:
stable across processes, carries no literal values, and after ``max_labels`` distinct labels
the rest share ``other`` so ad-hoc SQL can't explode the series count.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from infra.config._switch import part_metrics
from infra.metrics import OperationView, register_operation_view

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.connection import LoggedQuery

__all__ = ["StatementTimer", "statement_label"]

# get_stats() shows each statement label as a row; series with outcome="error" are the failed queries.
register_operation_view(
    OperationView(
        histogram="infra_db_query_duration_seconds",
        row="db {statement}",
        error_label="outcome",
        error_values=frozenset({"error"}),
    )
)

_WS = re.compile(r"\s+")
_VERB = re.compile(r"[A-Za-z]+")


def _normalise(sql: str) -> str:
    return _WS.sub(" ", sql).strip()


def statement_label(sql: str) -> str:
    """The default label of ``sql``: its first keyword and a short hash of the normalised text."""
    text = _normalise(sql)
    m = _VERB.match(text)
    verb = m.group(0).lower() if m else "sql"
    return f"{verb}_{hashlib.sha1(text.encode('utf-8'), usedforsecurity=False).hexdigest()[:8]}"


class StatementTimer:
    """An asyncpg query logger recording each query's duration by statement label."""

    def __init__(self, *, names: Mapping[str, str] | None = None, max_labels: int = 200) -> None:
        self.max_labels = max_labels
        self._names: dict[str, str] = {_normalise(k): v for k, v in (names or {}).items()}
        self._labels: dict[str, str] = {}  # raw SQL text -> label (asyncpg hands the same str back)
        self._children: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        # records nothing while metrics.enabled is false (``observed`` still counts: the timer's own)
        self._hist = part_metrics().histogram(
            "infra_db_query_duration_seconds",
            "asyncpg query time by statement label and outcome (ok / error).",
            labelnames=("statement", "outcome"),
        )
        self.observed = 0

    def name(self, sql: str, label: str) -> str:
        """Record ``label`` for ``sql``; returns ``sql`` so it can wrap a literal in place."""
        with self._lock:
            self._names[_normalise(sql)] = label
            self._labels.pop(sql, None)
        return sql

    def label_for(self, sql: str) -> str:
        """The label ``sql`` is recorded under."""
        label = self._labels.get(sql)
        if label is not None:
            return label
        with self._lock:
            label = self._names.get(_normalise(sql)) or statement_label(sql)
            known = set(self._labels.values())
            if label not in known and len(known) >= self.max_labels:
                label = "other"
            if len(self._labels) < 10 * self.max_labels:  # bound the memo, too
                self._labels[sql] = label
        return label

    def __call__(self, record: LoggedQuery) -> None:
        """asyncpg query-logger entry point (called on the loop after each query)."""
        try:
            outcome = "ok" if record.exception is None else "error"
            key = (self.label_for(record.query), outcome)
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self._hist.labels(*key)
            child.observe(record.elapsed)
            self.observed += 1
        except Exception:  # pragma: no cover - fail open: timing never breaks a query
            pass

    def attach(self, conn: asyncpg.Connection) -> None:
        """Add this timer to an asyncpg connection (idempotent)."""
        conn.add_query_logger(self)
