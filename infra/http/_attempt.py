"""One async attempt's clock: the timer that bounds its current phase, and how its failures are named.

An attempt runs in phases (the wait for a pool slot, the wait for the first byte, the body under the
call's deadline); one ``PhaseTimer`` per attempt is moved from phase to phase, and when it fires the
exception it caused is mapped to the phase that ran out (``_core``'s error kinds).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from infra.http._async_bodies import earliest
from infra.http._classify import FATAL
from infra.http._core import DEADLINE, FIRST_BYTE, POOL, HostState
from infra.http._lease import AsyncGate, take_now, wait_slots
from infra.http._timer import PhaseTimer, TimerWheel

if TYPE_CHECKING:
    from infra.config.sections.http import TimeoutConfig

__all__ = ["AttemptClock", "Classify", "Failure", "take_slots"]

_monotonic = time.monotonic
Classify = Callable[[BaseException], "str | None"]


class Failure(Exception):
    """One attempt failed with ``kind``; ``cause`` is the backend exception."""

    def __init__(self, kind: str, cause: BaseException) -> None:
        self.kind = kind
        self.cause = cause


class AttemptClock:
    """One attempt's timer and the phase it times (pool wait, first byte, body under the deadline)."""

    __slots__ = ("deadline_at", "phase", "timer", "when")

    def __init__(
        self, wheel: TimerWheel, deadline_at: float | None, phase: str, limit: float | None, now: float
    ) -> None:
        self.deadline_at = deadline_at
        self.phase = phase
        self.when = deadline_at if limit is None else earliest(deadline_at, now + limit)
        self.timer = PhaseTimer(self.when, wheel)

    def enter(self, phase: str, limit: float | None) -> None:
        """Move to ``phase``: ``limit`` seconds from now, never past the deadline."""
        self.phase = phase
        when = self.deadline_at if limit is None else earliest(self.deadline_at, _monotonic() + limit)
        if when != self.when:
            self.when = when
            self.timer.move(when)

    def failure(self, exc: BaseException, ours: bool, classify: Classify) -> Failure | None:
        """Map an exception raised during the attempt to a ``Failure``; None: not ours to map.

        A cancel our timer caused (and no outside one) is this phase running out: the deadline when the
        timer was armed for it, else the phase (pool, first byte). A ``TimeoutError`` our timer didn't
        cause is the backend's, classified like any other error.
        """
        if ours and isinstance(exc, asyncio.CancelledError):
            timeout = TimeoutError()
            timeout.__cause__ = exc
            exc = timeout
        elif not isinstance(exc, Exception):
            return None
        if isinstance(exc, TimeoutError):
            if not self.timer.expired():
                return Failure(classify(exc) or FATAL, exc)
            deadline = self.when is not None and self.when == self.deadline_at
            return Failure(DEADLINE if deadline else self.phase, exc)
        found = classify(exc)
        return None if found is None else Failure(found, exc)


def _no_backend(exc: BaseException) -> str | None:
    return None  # nothing but our own timer can fail a wait for a slot


async def take_slots(
    host: HostState,
    global_gate: AsyncGate,
    stats: Any,
    wheel: TimerWheel,
    deadline_at: float | None,
    timeout: TimeoutConfig,
) -> AttemptClock:
    """An attempt's first phase: a host and a global slot, then its clock armed for the first byte. Both
    are taken at once when free; else the call queues under the pool limit (the clock's cancel ends the
    wait, raised as a ``Failure``)."""
    now = _monotonic()
    if take_now(host.slots, global_gate, host.metrics, stats):
        clock = AttemptClock(wheel, deadline_at, FIRST_BYTE, timeout.first_byte, now)
        clock.timer.start()
        return clock
    clock = AttemptClock(wheel, deadline_at, POOL, timeout.pool, now)
    clock.timer.start()
    try:
        await wait_slots(host.slots, global_gate, host.metrics, stats)
    except BaseException as exc:
        failure = clock.failure(exc, clock.timer.stop(), _no_backend)
        if failure is None:
            raise
        raise failure from exc
    clock.enter(FIRST_BYTE, timeout.first_byte)
    return clock
