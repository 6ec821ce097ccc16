"""Per-origin retry budget: a failing upstream sees at most ~(1 + ratio) times the offered load.

Without a budget, 3 retries turn an outage into 4x the traffic exactly when the upstream can least take
it. The budget is a token bucket (the shape of Finagle's RetryBudget): every request deposits ``ratio``
tokens, a reserve refills at ``per_second`` tokens a second (so a trickle of traffic can still retry),
every retry withdraws one. The balance is capped at ten seconds' worth of reserve, so a long healthy spell
doesn't bank a storm. Thread-safe: the sync client calls it from many threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from infra.http._policy import BudgetSettings

__all__ = ["RetryBudget"]

_CAP_SECONDS = 10.0


class RetryBudget:
    """Token bucket deciding whether one more retry may go to an origin."""

    __slots__ = ("_cap", "_clock", "_lock", "_per_second", "_ratio", "_stamp", "_tokens", "denied", "enabled")

    def __init__(self, settings: BudgetSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = settings.enabled
        self._ratio = settings.ratio
        self._per_second = settings.per_second
        # At least one token of headroom above the reserve, so ratio deposits can accumulate to a retry.
        self._cap = max(settings.per_second * _CAP_SECONDS, 1.0)
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = settings.per_second  # one second of reserve to start with
        self._stamp = clock()
        self.denied = 0

    def _refill(self, now: float) -> None:
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self._cap, self._tokens + elapsed * self._per_second)
            self._stamp = now

    def deposit(self) -> None:
        """Record one new logical request (not a retry)."""
        if not self.enabled:
            return
        with self._lock:
            tokens = self._tokens + self._ratio
            self._tokens = tokens if tokens < self._cap else self._cap

    def try_withdraw(self) -> bool:
        """Take a token for one retry; False (and counted in ``denied``) when the budget is spent."""
        if not self.enabled:
            return True
        with self._lock:
            if self._per_second:
                self._refill(self._clock())
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            self.denied += 1
            return False

    @property
    def balance(self) -> float:
        with self._lock:
            if self._per_second:
                self._refill(self._clock())
            return self._tokens
