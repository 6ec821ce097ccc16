"""What the shared backends have in common, free of driver imports: the reconnect gate, names, origins.

The gate is the fail-open half that belongs to a backend: while the server is unreachable every call raises
``CacheError`` at once (no connect attempt, no timeout to wait out) until the backoff delay has passed; then
one call probes the server again. ``Cache`` counts the error and runs the wrapped call.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
import urllib.parse
from typing import Any

from infra.errors import CacheError

__all__ = ["FORKS", "ReconnectGate", "backend_kwargs", "check_identifier", "origin_of"]

log = logging.getLogger("infra.cache")

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")

#: ``FORKS[0]`` counts the forks this process came out of: a backend notes it when it opens connections and
#: compares it on every call to spot that it now runs in a child (whose sockets are the parent's). One list
#: read, where ``os.getpid()`` is a system call (~0.1 µs, twice per hit).
FORKS = [0]


def _count_fork() -> None:
    FORKS[0] += 1


os.register_at_fork(after_in_child=_count_fork)

#: first and largest delay (seconds) between reconnect attempts once the server is seen down
BACKOFF_INITIAL = 0.05
BACKOFF_MAX = 5.0


def backend_kwargs(settings: Any, options: Any, **kw: Any) -> dict[str, Any]:
    """Constructor arguments of a shared backend from ``CacheSettings``: its ``cache.<backend>`` options
    (field names are the constructor's), the byte caps, then ``kw`` (the dsn / url and overrides)."""
    return {
        **dataclasses.asdict(options),
        "max_bytes": settings.max_bytes or None,
        "budget": settings.store_budget,
        "namespace_max_bytes": {
            n: ns.max_bytes for n, ns in settings.namespaces.items() if ns.max_bytes is not None
        },
        **kw,
    }


def check_identifier(value: str, what: str) -> str:
    """A table / key prefix: lower-case letters, digits and ``_``, at most 40 characters (also quoted)."""
    if not isinstance(value, str) or not _IDENT.match(value):
        raise ValueError(f"{what} must match [a-z_][a-z0-9_]{{0,39}}, got {value!r}")
    return value


def origin_of(url: str | None) -> str:
    """``scheme://host:port`` of a DSN / URL: never the user, password, database or query string."""
    if not url:
        return "unset"
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port
    except ValueError:
        return "invalid-url"
    return f"{parts.scheme}://{host}:{port}" if port else f"{parts.scheme}://{host}"


class ReconnectGate:
    """Fail fast while a server is down; probe it again after an exponential backoff (50 ms .. 5 s).

    ``check()`` raises ``CacheError`` while the delay runs; ``failed(exc)`` opens / lengthens it and returns
    the ``CacheError`` to raise; ``ok()`` closes it. One log line per outage, not per call.
    """

    __slots__ = ("_delay", "_down_until", "_errors", "_lock", "_reason", "_reconnects", "name", "origin")

    def __init__(self, name: str, origin: str) -> None:
        self.name = name
        self.origin = origin
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._delay = 0.0
        self._reason = ""
        self._errors: Any = None
        self._reconnects: Any = None

    @property
    def down(self) -> bool:
        return self._delay > 0.0

    def check(self) -> None:
        """Raise ``CacheError`` at once while the server is in backoff."""
        if self._down_until and time.monotonic() < self._down_until:
            raise CacheError(
                f"{self.name} cache backend at {self.origin} is unavailable ({self._reason}); "
                f"next attempt in {self._down_until - time.monotonic():.2f}s"
            )

    def failed(self, exc: BaseException, *, connection: bool = True) -> CacheError:
        """Count a failure; when ``connection`` (the server went away), back off before the next attempt."""
        self._count_error()
        reason = f"{type(exc).__name__}: {exc}"[:200]
        if connection:
            with self._lock:
                first = self._delay == 0.0
                self._delay = BACKOFF_INITIAL if first else min(self._delay * 2, BACKOFF_MAX)
                self._down_until = time.monotonic() + self._delay
                self._reason = reason
            if first:
                log.warning(
                    "%s cache backend at %s is down (%s); failing open, reconnecting with backoff",
                    self.name,
                    self.origin,
                    reason,
                )
        return CacheError(f"{self.name} cache backend at {self.origin} failed: {reason}")

    def ok(self) -> None:
        """The server answered: close the gate (cheap when it was closed)."""
        if self._delay:
            with self._lock:
                was = self._delay
                self._delay = 0.0
                self._down_until = 0.0
            if was:
                self._count_reconnect()
                log.warning("%s cache backend at %s is back", self.name, self.origin)

    # metrics are resolved on first use (the registry import stays off the import path)
    def _count_error(self) -> None:
        if self._errors is None:
            from infra.metrics import get_metrics

            self._errors = (
                get_metrics()
                .counter(
                    "infra_cache_backend_errors_total",
                    "Cache backend operations that failed.",
                    labelnames=("backend",),
                )
                .labels(self.name)
            )
        self._errors.inc()

    def _count_reconnect(self) -> None:
        if self._reconnects is None:
            from infra.metrics import get_metrics

            self._reconnects = (
                get_metrics()
                .counter(
                    "infra_cache_backend_reconnects_total",
                    "Cache backend recoveries after an outage.",
                    labelnames=("backend",),
                )
                .labels(self.name)
            )
        self._reconnects.inc()
