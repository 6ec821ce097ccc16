"""The reconnect gate: the fail-open half that belongs to a backend.

While the server is unreachable every call raises ``CacheError`` at once (no connect attempt, no timeout to
wait out). With a ``probe`` (the shared backends), a background thread tries the server with backoff until it
answers, and only then lets calls through again: no caller ever pays for finding out that a hung server is
still hung (issue 17 item 6). Without one (the SQLite store's busy lock), the first call after the backoff
delay tries again. ``Cache`` counts the error and runs the wrapped call.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from infra.errors import CacheError

__all__ = ["BACKOFF_INITIAL", "BACKOFF_MAX", "ReconnectGate"]

log = logging.getLogger("infra.cache")

#: first and largest delay (seconds) between reconnect attempts once the server is seen down
BACKOFF_INITIAL = 0.05
BACKOFF_MAX = 5.0


class ReconnectGate:
    """Fail fast while a server is down; try it again after an exponential backoff (50 ms .. 5 s).

    ``check()`` raises ``CacheError`` while the gate is open; ``failed(exc)`` opens / lengthens it and returns
    the ``CacheError`` to raise; ``ok()`` closes it. With a ``probe`` (a callable that raises unless the
    server answers) the gate stays open until a background thread's probe succeeds; without one, until the
    delay has passed. One log line per outage, not per call.
    """

    __slots__ = (
        "_errors",
        "_lock",
        "_probe",
        "_prober",
        "_reason",
        "_reconnects",
        "_stop",
        "delay",
        "down_until",
        "name",
        "origin",
    )

    def __init__(self, name: str, origin: str, probe: Callable[[], object] | None = None) -> None:
        self.name = name
        self.origin = origin
        self._lock = threading.Lock()
        self.down_until = 0.0
        self.delay = 0.0
        self._reason = ""
        self._errors: Any = None
        self._reconnects: Any = None
        self._probe = probe
        self._prober: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def down(self) -> bool:
        return self.delay > 0.0

    def check(self) -> None:
        """Raise ``CacheError`` at once while the server is in backoff."""
        if self.down_until and time.monotonic() < self.down_until:
            if self._probe is not None:
                self._ensure_prober()  # (a forked child inherits an open gate but not the thread)
                raise CacheError(
                    f"{self.name} cache backend at {self.origin} is unavailable ({self._reason}); "
                    "skipped until a background probe gets an answer"
                )
            raise CacheError(
                f"{self.name} cache backend at {self.origin} is unavailable ({self._reason}); "
                f"next attempt in {self.down_until - time.monotonic():.2f}s"
            )

    def failed(self, exc: BaseException, *, connection: bool = True) -> CacheError:
        """Count a failure; when ``connection`` (the server went away), back off before the next attempt."""
        self._count_error()
        reason = f"{type(exc).__name__}: {exc}"[:200]
        if connection:
            with self._lock:
                first = self.delay == 0.0
                self.delay = BACKOFF_INITIAL if first else min(self.delay * 2, BACKOFF_MAX)
                self.down_until = math.inf if self._probe is not None else time.monotonic() + self.delay
                self._reason = reason
            if self._probe is not None:
                self._ensure_prober()
            if first:
                log.warning(
                    "%s cache backend at %s is unavailable (%s); failing open, retrying with backoff",
                    self.name,
                    self.origin,
                    reason,
                )
        return CacheError(f"{self.name} cache backend at {self.origin} failed: {reason}")

    def _ensure_prober(self) -> None:
        with self._lock:
            t = self._prober
            if (t is not None and t.is_alive()) or self._stop.is_set() or not self.delay:
                return
            t = self._prober = threading.Thread(
                target=self._probe_until_up, name=f"infra-cache-{self.name}-probe", daemon=True
            )
            t.start()

    def _probe_until_up(self) -> None:
        """The background half: probe with backoff until the server answers, then close the gate."""
        assert self._probe is not None
        delay = BACKOFF_INITIAL
        while not self._stop.wait(delay):
            try:
                self._probe()
            except Exception as exc:
                self._reason = f"{type(exc).__name__}: {exc}"[:200]
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            self.ok()
            return

    def close(self) -> None:
        """Stop probing (the backend is closing)."""
        self._stop.set()

    def ok(self) -> None:
        """The server answered: close the gate (cheap when it was closed)."""
        if self.delay:
            with self._lock:
                was = self.delay
                self.delay = 0.0
                self.down_until = 0.0
            if was:
                self._count_reconnect()
                log.warning("%s cache backend at %s is back", self.name, self.origin)

    # metrics are resolved on first use (the registry import stays off the import path)
    def _count_error(self) -> None:
        if self._errors is None:
            self._errors = _backend_counter(
                "infra_cache_backend_errors_total", "Cache backend operations that failed.", self.name
            )
        self._errors.inc()

    def _count_reconnect(self) -> None:
        if self._reconnects is None:
            self._reconnects = _backend_counter(
                "infra_cache_backend_reconnects_total", "Cache backend recoveries after an outage.", self.name
            )
        self._reconnects.inc()


def _backend_counter(name: str, help_text: str, backend: str) -> Any:
    """The registry's counter ``name`` labelled with ``backend`` (one that records nothing while
    ``metrics.enabled`` is false)."""
    from infra.config._switch import part_metrics

    return part_metrics().counter(name, help_text, labelnames=("backend",)).labels(backend)
