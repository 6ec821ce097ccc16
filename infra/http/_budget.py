"""Per-origin retry budget: a failing upstream sees at most (1 + ratio) times the offered load.

Without a budget, 3 retries turn an outage into 4x the traffic exactly when the upstream can least take it.
The budget is a token bucket (the shape of Finagle's RetryBudget): every request earns ``ratio`` of a retry,
every retry spends one. So that a trickle of traffic can still retry, a reserve accrues ``per_second`` retries
a second, but as a *floor*, not on top: the bucket earns the larger of what the requests earned and what the
reserve accrued, never their sum, over any stretch in which neither led the other by more than the cap, ten
seconds of reserve (a longer lead is forgotten, so that the reserve comes back for a trickle after a busy
spell, and the requests' earnings for a storm after a quiet one). Under a storm of N requests over T seconds
the upstream therefore sees at most N + max(ratio x N, per_second x (1 + T)) tries however unevenly the
requests come (a fresh budget's one second of reserve is an advance on that, not extra), unless one side gets
more than the cap ahead within it; the reserve only decides at rates below ``per_second / ratio`` requests a
second. The balance is capped at ten seconds' worth of reserve, so a long healthy spell doesn't bank a storm.

Exact: tokens are integers in units of 1/denominator of ``ratio`` (0.1 is exactly 1/10: ten requests
earn exactly one retry; float sums made ten deposits of 0.1 worth 0.9999999999999999, which refused the
retry). Thread-safe: the sync client calls it from many threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from fractions import Fraction

from infra.config.sections.http import RetryBudgetConfig

__all__ = ["RetryBudget", "exact_ratio"]

_CAP_SECONDS = 10
# A ratio is read as the nearest fraction with a denominator up to this (0.1 -> 1/10, 0.333... -> 1/3).
_MAX_DENOMINATOR = 1_000_000


def exact_ratio(ratio: float) -> Fraction:
    """``ratio`` as the fraction the user meant: its shortest decimal form, then the nearest simple one."""
    return Fraction(repr(float(ratio))).limit_denominator(_MAX_DENOMINATOR)


class RetryBudget:
    """Token bucket deciding whether one more retry may go to an origin."""

    __slots__ = (
        "_cap",
        "_clock",
        "_cost",
        "_earn",
        "_lead",
        "_lead_max",
        "_lock",
        "_rate",
        "_stamp",
        "_tokens",
        "denied",
        "enabled",
        "full",
    )

    def __init__(self, settings: RetryBudgetConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = settings.enabled
        ratio = exact_ratio(settings.ratio)
        self._cost = ratio.denominator  # units per retry
        self._earn = ratio.numerator  # units a request earns
        self._rate = settings.per_second * self._cost  # units the reserve accrues a second
        reserve = int(self._rate)  # one second of reserve, in units
        # At least one retry of headroom, so ratio deposits can accumulate to a retry.
        self._cap = max(reserve * _CAP_SECONDS, self._cost)
        # (what requests earned) - (what the reserve accrued), kept within the cap either way: the bucket
        # grows by max(earned, accrued) while neither side leads by more than ten seconds of reserve, and
        # only a longer spell of either is forgotten. It was one second: a storm whose requests paused past
        # that (a slow first round, a stall on a loaded box) had the reserve's accrual during the pause
        # forgotten as a lead yet kept as tokens, so the storm got it on top of its ratio (603 tries for 500
        # calls where 600 is the most). Ten seconds is the cap's span, so the reserve resuming later after a
        # busy spell costs a trickle little: a busy spell that led by that much also filled the balance.
        self._lead_max = max(self._cap, self._cost)
        # A fresh budget starts with one second of reserve, as if that second had passed: the requests then
        # pay it back before they add (the advance is not extra on top of ratio x requests).
        self._tokens = reserve
        self._lead = -reserve
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp = clock()
        self.denied = 0
        # True only while a deposit would change nothing (the balance at its cap and the requests' lead at
        # its most: the steady state of healthy traffic), so ``deposit`` returns on one attribute read,
        # without the lock. Set under the lock once a deposit leaves that state; cleared, under the lock,
        # *before* anything moves the balance or the lead, so a reader that sees it True sees that state.
        self.full = False

    def _add(self, units: int) -> None:
        tokens = self._tokens + units
        self._tokens = tokens if tokens < self._cap else self._cap

    # The bucket grows by the change in max(earned, accrued) = accrued + max(0, lead):
    #   a deposit of e: max(0, lead + e) - max(0, lead);  a refill of r: r + max(0, lead - r) - max(0, lead).

    def _refill(self, now: float) -> None:
        units = int((now - self._stamp) * self._rate)
        if units <= 0:
            return
        self.full = False
        self._stamp += units / self._rate
        lead = self._lead
        if lead < units:
            self._add(units - lead if lead > 0 else units)
        lead -= units
        self._lead = lead if lead > -self._lead_max else -self._lead_max

    def deposit(self) -> None:
        """Record one new logical request (not a retry)."""
        if self.full or not self.enabled:
            return
        with self._lock:
            lead = self._lead
            after = lead + self._earn
            if after > 0:
                self._add(after - lead if lead > 0 else after)
            lead = self._lead = after if after < self._lead_max else self._lead_max
            if lead == self._lead_max and self._tokens >= self._cap:
                self.full = True

    def try_withdraw(self) -> bool:
        """Take a token for one retry; False (and counted in ``denied``) when the budget is spent."""
        if not self.enabled:
            return True
        with self._lock:
            if self._rate:
                self._refill(self._clock())
            if self._tokens >= self._cost:
                self.full = False
                self._tokens -= self._cost
                return True
            self.denied += 1
            return False

    def give_back(self) -> None:
        """Return the token of a retry that was taken but never sent (the breaker opened during its
        backoff, or the call was cancelled): the budget counts retries the upstream received."""
        if not self.enabled:
            return
        with self._lock:
            self._add(self._cost)

    @property
    def balance(self) -> Fraction:
        """Retries the budget would allow now (exact)."""
        with self._lock:
            if self._rate:
                self._refill(self._clock())
            return Fraction(self._tokens, self._cost)
