"""Per-origin circuit breaker: closed → open → half-open → closed, decided without I/O.

What it counts is logical calls, one outcome each when the call ends (``_core.Call``), not attempts: one
call's retries can't open it alone. Opens on ``consecutive_failures`` failed calls in a row, or when at
least ``min_requests`` calls within ``window`` seconds failed at a share of ``failure_rate`` or more.
While open every call is rejected at once (no lock, no I/O: one attribute read and a clock read). After
``cooldown`` the next calls become half-open probes (at most ``half_open_probes`` in flight); a probe's
success closes the breaker, its failure re-opens it for another cooldown. 429 is neutral: the upstream
is alive and asked us to slow down, which the retry backoff handles.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from infra.config.sections.http import BreakerConfig

log = logging.getLogger("infra.http")

__all__ = [
    "CLOSED",
    "FAILURE",
    "HALF_OPEN",
    "NEUTRAL",
    "NORMAL",
    "OPEN",
    "PROBE",
    "REJECT",
    "SUCCESS",
    "CircuitBreaker",
]

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

# Outcomes of one attempt.
SUCCESS = 0
FAILURE = 1
NEUTRAL = 2

# Admissions.
REJECT = -1
NORMAL = 0
PROBE = 1

_BUCKETS = 10


class CircuitBreaker:
    """State machine for one origin. ``on_change(state)`` is called (outside the lock) on every transition."""

    __slots__ = (
        "_adaptive",
        "_adjusted_at",
        "_buckets",
        "_clock",
        "_consecutive",
        "_lock",
        "_on_change",
        "_opened_at",
        "_period",
        "_probes",
        "_slot",
        "enabled",
        "name",
        "settings",
        "state",
        "threaded",
        "threshold",
    )

    def __init__(
        self,
        settings: BreakerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str], None] | None = None,
        name: str = "",
        threaded: bool = True,
    ) -> None:
        self.settings = settings
        # False: only one thread (an event loop's) ever records, so a success needs no lock (the async
        # client's breakers; the sync client's are recorded from its callers' threads).
        self.threaded = threaded
        self.name = name
        self.threshold = settings.consecutive_failures
        self.enabled = settings.enabled
        self.state = CLOSED
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at = 0.0
        self._probes = 0
        self._slot = settings.window / _BUCKETS
        self._adaptive = settings.adaptive
        self._adjusted_at = clock()
        self._period = [0, 0]  # requests, failures since the last adaptive check
        # Ring of [bucket index, requests, failures]; a bucket is window/10 seconds wide.
        self._buckets: list[list[float]] = [[-1, 0, 0] for _ in range(_BUCKETS)]

    # -- admission ---------------------------------------------------------------------------------------

    def admit(self) -> int:
        """NORMAL or PROBE when a call may go out, REJECT when the breaker is open (no I/O may happen)."""
        if self.state == CLOSED or not self.enabled:
            return NORMAL
        changed = None
        with self._lock:
            if self.state == OPEN:
                if self._clock() - self._opened_at < self.settings.cooldown:
                    return REJECT
                self.state = changed = HALF_OPEN
                self._probes = 0
            if self.state == HALF_OPEN:
                if self._probes >= self.settings.half_open_probes:
                    result = REJECT
                else:
                    self._probes += 1
                    result = PROBE
            else:  # closed again meanwhile
                result = NORMAL
        if changed is not None:
            self._notify(changed)
        return result

    def allows_retry(self, admission: int | None) -> bool:
        """Whether a call admitted with ``admission`` may send another try: the breaker is closed (or off),
        or the call is the half-open probe itself. A breaker opened meanwhile by other calls stops it."""
        state = self.state
        return state == CLOSED or not self.enabled or (admission == PROBE and state == HALF_OPEN)

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when half-open or closed)."""
        if self.state != OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.settings.cooldown - self._clock())

    # -- outcomes ----------------------------------------------------------------------------------------

    def record(self, outcome: int, admission: int = NORMAL) -> None:
        """Feed the outcome of one attempt admitted with ``admission``."""
        if not self.enabled:
            return
        if outcome == SUCCESS and admission == NORMAL and not self._adaptive:
            # The common case, a success while closed, in one short block: what _count does, plus the
            # reset of the failure run. No state can change on this path.
            index = int(self._clock() // self._slot)
            bucket = self._buckets[index % _BUCKETS]
            lock = self._lock if self.threaded else None
            if lock is not None:
                lock.acquire()  # not ``with``: its protocol costs twice the acquire and release
            try:
                if self.state == CLOSED:
                    if bucket[0] != index:
                        bucket[0], bucket[1], bucket[2] = index, 1, 0
                    else:
                        bucket[1] += 1
                    self._consecutive = 0
            finally:
                if lock is not None:
                    lock.release()
            return
        changed = None
        with self._lock:
            if admission == PROBE:
                self._probes = max(0, self._probes - 1)
                if self.state == HALF_OPEN:
                    if outcome == SUCCESS:
                        changed = self._close()
                    elif outcome == FAILURE:
                        changed = self._open()
            elif outcome != NEUTRAL and self.state == CLOSED:
                failed = outcome == FAILURE
                self._count(failed)
                if self.settings.adaptive:
                    self._adapt(failed)
                if failed:
                    self._consecutive += 1
                    if self._consecutive >= self.threshold or self._rate_tripped():
                        changed = self._open()
                else:
                    self._consecutive = 0
        if changed is not None:
            self._notify(changed)

    def release(self, admission: int) -> None:
        """An admitted call ended without an outcome (cancelled): free its probe slot."""
        if admission == PROBE:
            with self._lock:
                self._probes = max(0, self._probes - 1)

    # -- internals (lock held) ---------------------------------------------------------------------------

    def _count(self, failed: bool) -> None:
        index = int(self._clock() // self._slot)
        bucket = self._buckets[index % _BUCKETS]
        if bucket[0] != index:
            bucket[0], bucket[1], bucket[2] = index, 0, 0
        bucket[1] += 1
        if failed:
            bucket[2] += 1

    def _window_counts(self) -> tuple[float, float]:
        oldest = int(self._clock() // self._slot) - _BUCKETS + 1
        requests = failures = 0.0
        for index, req, fail in self._buckets:
            if index >= oldest:
                requests += req
                failures += fail
        return requests, failures

    def _rate_tripped(self) -> bool:
        requests, failures = self._window_counts()
        return requests >= self.settings.min_requests and failures >= self.settings.failure_rate * requests

    def _adapt(self, failed: bool) -> None:
        """PERF-010: once per window, move the consecutive-failure threshold with the success rate."""
        period = self._period
        period[0] += 1
        period[1] += failed
        now = self._clock()
        if now - self._adjusted_at < self.settings.window:
            return
        self._adjusted_at = now
        requests, failures = period
        period[0] = period[1] = 0
        if requests < self.settings.min_requests:
            return
        rate = 1.0 - failures / requests
        s = self.settings
        before = self.threshold
        if rate > 0.95:
            self.threshold = min(self.threshold + 1, s.max_consecutive)
        elif rate < 0.80:
            self.threshold = max(self.threshold - 1, s.min_consecutive)
        if self.threshold != before:
            log.info(
                "breaker %s: consecutive-failure threshold %d -> %d (success rate %.1f%% over %.0fs)",
                self.name,
                before,
                self.threshold,
                rate * 100,
                s.window,
            )

    def _open(self) -> str:
        self.state = OPEN
        self._opened_at = self._clock()
        self._probes = 0
        return OPEN

    def _close(self) -> str:
        self.state = CLOSED
        self._consecutive = 0
        for bucket in self._buckets:
            bucket[0], bucket[1], bucket[2] = -1, 0, 0
        return CLOSED

    def _notify(self, state: str) -> None:
        if self._on_change is not None:
            with contextlib.suppress(Exception):  # metrics must never break the call (fail open)
                self._on_change(state)
