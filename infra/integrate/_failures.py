"""The integration's own failures: counted in ``infra_integrate_failures_total{part}``, logged once per part.

Fail open: a part of the layer that can't start (the cache directory is unwritable, the /metrics port is
taken, torch refuses a thread setting) is recorded here and the worker goes on without it.
"""

from __future__ import annotations

import logging
import threading

__all__ = ["failure_counts", "record_failure", "reset_failures"]

log = logging.getLogger("infra.integrate")

_lock = threading.Lock()
_logged: set[str] = set()
_counts: dict[str, int] = {}


def record_failure(part: str, message: str, exc: BaseException | None = None) -> None:
    """Count one failure of ``part`` (cache, metrics_server, torch, warmup, metrics) and log it once."""
    with _lock:
        _counts[part] = _counts.get(part, 0) + 1
        first = part not in _logged
        _logged.add(part)
    from infra.config._switch import metrics_enabled
    from infra.metrics import count_failure

    if metrics_enabled():  # failure_counts() and the log line count either way
        count_failure(
            "infra_integrate_failures_total",
            "Parts of the layer that failed to start in infra.enable(); the worker went on without them.",
            "part",
            part,
        )
    if first:
        detail = f": {exc}" if exc is not None else ""
        log.warning("perf-infra: %s%s (continuing without it; logged once)", message, detail)


def failure_counts() -> dict[str, int]:
    """Failures counted so far in this process, by part."""
    with _lock:
        return dict(_counts)


def reset_failures() -> None:
    """Forget counts and the logged-once memory (tests)."""
    with _lock:
        _counts.clear()
        _logged.clear()
