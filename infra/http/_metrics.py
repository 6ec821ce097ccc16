"""Metrics glue: one bundle of bound children per origin, resolved once, kept off the hot path.

Labels carry the origin (scheme://host:port) and never path, query or headers. Every call into the
registry is guarded: a metrics failure is counted in ``failures``, logged once, and never reaches the
request (fail open).

Two figures are counted in our own structures on the hot path and handed to the registry before each
read (a collect hook, as the cache does): connections in use are a plain ``in_use`` int the client moves
inline (two registry calls a request, +1 and -1, were ~0.5 µs of the layer's ~7), pushed into the
``infra_http_active_connections`` gauge as the sum over the live clients' counts for that origin; and a
call's duration is one C-level ``list.append`` onto the histogram child's ``pending`` list (its ``note``
without the Python frame), folded every ``_FOLD_AT`` values and by every read.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from infra.metrics import OperationView, register_operation_view

__all__ = ["HostMetrics", "NullMetrics"]

# get_stats() shows each method and origin as a row (its status classes merge through their sketches);
# a call that ended in a transport error or a 5xx answer (after retries), or that the circuit breaker
# refused ("refused", nothing sent), failed. A cancelled call ("cancelled") is counted, not an error.
register_operation_view(
    OperationView(
        histogram="infra_http_request_duration_seconds",
        row="http {method} {origin}",
        error_label="code",
        error_values=frozenset({"5xx", "error", "refused"}),
    )
)

log = logging.getLogger("infra.http")

_logged = False
failures = 0

_BREAKER_STATE_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_FOLD_AT = 2048  # durations appended before they are folded into the histogram (its ``note`` does the same)
_ORIGIN = ("origin",)
_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


def _failed(exc: BaseException) -> None:
    global _logged, failures
    failures += 1
    if not _logged:
        _logged = True
        log.warning("infra.http metrics failed (counted, requests unaffected): %s", type(exc).__name__)


def _nothing(*args: object) -> None:
    pass


class _Null:
    """A metric child that records nothing (the registry failed: metrics fail open)."""

    inc = dec = set = observe = note = staticmethod(_nothing)


_NULL = _Null()


# The active-connections gauge children in use, each with the origin states counting into it: id(child) ->
# (child, live HostMetrics). Several clients talking to one origin share its child; the hook sums them.
_active_lock = threading.Lock()
_active: dict[int, tuple[Any, weakref.WeakSet[HostMetrics]]] = {}


def _track_active(child: Any, metrics: HostMetrics) -> None:
    with _active_lock:
        entry = _active.get(id(child))
        if entry is None:
            entry = _active[id(child)] = (child, weakref.WeakSet())
        entry[1].add(metrics)


def push_active() -> None:
    """The collect hook: set each origin's active-connections gauge to its clients' ``in_use`` counts
    (0 once none is left, and then the child is no longer tracked)."""
    with _active_lock:
        snapshot = [(key, child, list(members)) for key, (child, members) in _active.items()]
    try:
        for key, child, members in snapshot:
            child.set(float(sum(m.in_use for m in members)))
            if not members:
                with _active_lock:
                    entry = _active.get(key)
                    if entry is not None and not entry[1]:
                        del _active[key]
    except Exception as exc:
        _failed(exc)


class NullMetrics:
    """Metrics switched off: every hook is a no-op (``in_use`` is counted and goes nowhere)."""

    in_use = 0  # connection slots this origin's calls hold: the client moves it inline

    def duration(self, method: str, status: int | None, seconds: float) -> None:
        pass

    def ttfb(self, method: str, seconds: float) -> None:
        pass

    def outcome(self, method: str, code: str, seconds: float) -> None:
        pass

    def retry(self, reason: str) -> None:
        pass

    def budget_denied(self) -> None:
        pass

    def breaker_changed(self, state: str) -> None:
        pass

    def pool_wait(self, seconds: float) -> None:
        pass

    def active(self, delta: int) -> None:
        self.in_use += delta


class HostMetrics(NullMetrics):
    """Bound metric children for one origin."""

    _budget: Any
    _breaker_state: Any
    _pool_wait: Any
    _h_duration: Any
    _h_ttfb: Any
    _c_retries: Any

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.in_use = 0
        # (method, status) -> the histogram child's pending list, and the child that folds it
        self._duration: dict[tuple[str, int | None], list[float]] = {}
        self._folds: dict[tuple[str, int | None], Any] = {}
        self._ttfb: dict[str, Any] = {}
        self._retries: dict[str, Any] = {}
        try:
            from infra.metrics import get_metrics

            reg = get_metrics()
            self._h_duration = reg.histogram(
                "infra_http_request_duration_seconds",
                "Duration of one logical HTTP call (all attempts), by origin, method and status class "
                "(error: no status; refused: the circuit breaker refused it; cancelled).",
                labelnames=("origin", "method", "code"),
            )
            self._h_ttfb = reg.histogram(
                "infra_http_time_to_first_byte_seconds",
                "Time from the start of a streamed call to its response headers, by origin and method.",
                labelnames=("origin", "method"),
            )
            self._c_retries = reg.counter(
                "infra_http_retries_total",
                "Retries sent (counted when the retry goes out after its backoff), by origin and reason.",
                labelnames=("origin", "reason"),
            )
            self._budget = reg.counter(
                "infra_http_retry_budget_denied_total",
                "Retries the per-origin retry budget refused.",
                labelnames=_ORIGIN,
            ).labels(origin)
            c_breaker = reg.counter(
                "infra_http_breaker_transitions_total",
                "Circuit breaker state changes, by origin and the state entered.",
                labelnames=("origin", "state"),
            )
            self._breaker_to = {s: c_breaker.labels(origin, s) for s in _BREAKER_STATE_VALUE}
            # Several workers' breaker states aggregate to the worst any of them is in, not a sum.
            self._breaker_state = reg.gauge(
                "infra_http_breaker_state",
                "Circuit breaker state by origin: 0 closed, 1 half-open, 2 open.",
                labelnames=_ORIGIN,
                aggregate="max",
            ).labels(origin)
            wait = "Time a call waited for a free connection slot (only calls that had to wait)."
            h_wait = reg.histogram("infra_http_pool_wait_seconds", wait, labelnames=_ORIGIN)
            active = (
                "Connections in use (requests holding a connection slot; to an HTTP/2 origin, its streams "
                "in flight), by origin."
            )
            g_active = reg.gauge("infra_http_active_connections", active, labelnames=_ORIGIN)
            self._pool_wait = h_wait.labels(origin)
            self._wait_pending: list[float] = self._pool_wait.pending
            _track_active(g_active.labels(origin), self)
            reg.add_collect_hook(push_active)
        except Exception as exc:
            _failed(exc)
            self._budget = self._breaker_state = self._pool_wait = _NULL
            self._wait_pending = []
            self._breaker_to = {}
            self._h_duration = self._h_ttfb = self._c_retries = None

    def duration(self, method: str, status: int | None, seconds: float) -> None:
        # Keyed by the exact status, and holding the child's ``pending`` list (what its ``note`` appends
        # to; folded into the sketch in batches and before every read): one dict get and one C call.
        key = (method, status)
        pending = self._duration.get(key)
        if pending is None:
            pending = self._pending_for(key)
        pending.append(seconds)
        if len(pending) >= _FOLD_AT:
            self._fold(key, pending)

    def _pending_for(self, key: tuple[str, int | None]) -> list[float]:
        method, status = key
        try:
            cls = _CLASSES.get(status // 100, "other") if status is not None else "error"
            child = self._h_duration.labels(self.origin, method, cls) if self._h_duration else None
            pending: list[float] = child.pending if child is not None else []
        except Exception as exc:
            _failed(exc)
            child, pending = None, []
        self._folds[key] = child
        self._duration[key] = pending
        return pending

    def _fold(self, key: tuple[str, int | None], pending: list[float]) -> None:
        child = self._folds.get(key)
        try:
            if child is None:
                pending.clear()  # the registry failed: nothing to fold into
            else:
                child.fold_pending()
        except Exception as exc:
            pending.clear()
            _failed(exc)

    def outcome(self, method: str, code: str, seconds: float) -> None:
        """A call that ended with no status: ``code`` "refused" (the breaker refused it, nothing sent) or
        "cancelled" (off the hot path, so not memoised)."""
        try:
            if self._h_duration:
                self._h_duration.labels(self.origin, method, code).note(seconds)
        except Exception as exc:
            _failed(exc)

    def ttfb(self, method: str, seconds: float) -> None:
        record = self._ttfb.get(method)
        try:
            if record is None:
                child = self._h_ttfb.labels(self.origin, method) if self._h_ttfb else _NULL
                record = self._ttfb[method] = child.note
            record(seconds)
        except Exception as exc:
            _failed(exc)

    def retry(self, reason: str) -> None:
        child = self._retries.get(reason)
        try:
            if child is None:
                child = self._retries[reason] = (
                    self._c_retries.labels(self.origin, reason) if self._c_retries else _NULL
                )
            child.inc()
        except Exception as exc:
            _failed(exc)

    def budget_denied(self) -> None:
        try:
            self._budget.inc()
        except Exception as exc:
            _failed(exc)

    def breaker_changed(self, state: str) -> None:
        try:
            self._breaker_to.get(state, _NULL).inc()
            self._breaker_state.set(_BREAKER_STATE_VALUE.get(state, -1.0))
        except Exception as exc:
            _failed(exc)

    def pool_wait(self, seconds: float) -> None:
        pending = self._wait_pending  # the histogram child's (see ``duration``)
        pending.append(seconds)
        if len(pending) >= _FOLD_AT:
            try:
                if self._pool_wait is _NULL:
                    pending.clear()
                else:
                    self._pool_wait.fold_pending()
            except Exception as exc:
                pending.clear()
                _failed(exc)

    def active(self, delta: int) -> None:
        self.in_use += delta
