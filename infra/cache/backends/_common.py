"""What the backends have in common, free of driver imports: the reconnect gate, names, origins, and
whether a lease holder is a dead process of this host (its owner is ``host:pid:...``, as ``Cache`` names
itself: such a lease is taken over at once instead of after its timeout; issue 17 item 7).

The gate is the fail-open half that belongs to a backend: while the server is unreachable every call raises
``CacheError`` at once (no connect attempt, no timeout to wait out). With a ``probe`` (the shared backends),
a background thread tries the server with backoff until it answers, and only then lets calls through again:
no caller ever pays for finding out that a hung server is still hung (issue 17 item 6). Without one (the
SQLite store's busy lock), the first call after the backoff delay tries again. ``Cache`` counts the error and
runs the wrapped call.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from infra.errors import CacheError

__all__ = [
    "BIG_WRITE",
    "FORKS",
    "ReconnectGate",
    "backend_kwargs",
    "check_identifier",
    "holder_is_dead",
    "origin_of",
]

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
#: a write of more payload bytes than this may take the backend's ``op_timeout`` instead of the store budget:
#: 1 MiB in 50 ms is 20 MB/s, which a LAN link to a healthy server can fall short of, and a value that large
#: usually stands for far more work than the wait
BIG_WRITE = 1024**2


def backend_kwargs(settings: Any, options: Any, **kw: Any) -> dict[str, Any]:
    """Constructor arguments of a shared backend from ``CacheConfig``: its ``cache.<backend>`` options
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


_HOST = socket.gethostname()  # (a host renamed while running keeps taking over its own dead holders)


def holder_is_dead(owner: str) -> bool:
    """True when ``owner`` (``host:pid:...``, as ``Cache`` names itself) is a process of this host that no
    longer exists. Unknown forms, other hosts and live pids are not dead (a reused pid only delays a
    takeover until the lease times out: never two holders at once)."""
    host, sep, _ = owner.rpartition(":")
    host, sep2, pid_s = host.rpartition(":")
    if not (sep and sep2) or host != _HOST:
        return False
    try:
        pid = int(pid_s)
    except ValueError:
        return False
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError as exc:  # EPERM: it exists (another user's)
        return exc.errno == errno.ESRCH
    return False


class ReconnectGate:
    """Fail fast while a server is down; try it again after an exponential backoff (50 ms .. 5 s).

    ``check()`` raises ``CacheError`` while the gate is open; ``failed(exc)`` opens / lengthens it and returns
    the ``CacheError`` to raise; ``ok()`` closes it. With a ``probe`` (a callable that raises unless the
    server answers) the gate stays open until a background thread's probe succeeds; without one, until the
    delay has passed. One log line per outage, not per call.
    """

    __slots__ = (
        "_delay",
        "_down_until",
        "_errors",
        "_lock",
        "_probe",
        "_prober",
        "_reason",
        "_reconnects",
        "_stop",
        "name",
        "origin",
    )

    def __init__(self, name: str, origin: str, probe: Callable[[], object] | None = None) -> None:
        self.name = name
        self.origin = origin
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._delay = 0.0
        self._reason = ""
        self._errors: Any = None
        self._reconnects: Any = None
        self._probe = probe
        self._prober: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def down(self) -> bool:
        return self._delay > 0.0

    def check(self) -> None:
        """Raise ``CacheError`` at once while the server is in backoff."""
        if self._down_until and time.monotonic() < self._down_until:
            if self._probe is not None:
                self._ensure_prober()  # (a forked child inherits an open gate but not the thread)
                raise CacheError(
                    f"{self.name} cache backend at {self.origin} is unavailable ({self._reason}); "
                    "skipped until a background probe gets an answer"
                )
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
                self._down_until = math.inf if self._probe is not None else time.monotonic() + self._delay
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
            if (t is not None and t.is_alive()) or self._stop.is_set() or not self._delay:
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
