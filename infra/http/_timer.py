"""PhaseTimer: one timer per attempt whose limit moves with the phase, cheaply.

An attempt passes through phases with different limits: the pool wait (Timeouts.pool), the wait for
response headers (Timeouts.first_byte), the body (the call's deadline), each capped by the deadline. With
``asyncio.timeout`` each phase costs a context or a reschedule (a cancel plus a heap push, ~3.5 µs each
on our machines, a tenth of the layer's whole per-request budget). Here moving the limit *later* is an
attribute write: the armed handle fires at the old limit, sees the new one and re-arms itself. Only a
limit moved *earlier* touches the loop. Expiry cancels the task and surfaces as TimeoutError on exit,
with the same cancel/uncancel bookkeeping as ``asyncio.timeout`` (a concurrent outside cancel wins).

Two more savings for the client's hot path: limits far away (the usual 10 s pool, 30 s first byte, 60 s
deadline) go into a per-client ``TimerWheel`` instead of the loop's heap, and ``start()`` / ``stop()``
replace ``async with`` (whose ``__aenter__`` / ``__aexit__`` are two coroutine objects per attempt).
"""

from __future__ import annotations

import asyncio
import sys
import time
from types import TracebackType
from typing import Any

__all__ = ["PhaseTimer", "TimerWheel"]

# A handle runs when the loop's clock is within its resolution of the deadline; treat "that close" as
# reached rather than re-arming for a few microseconds.
_SLACK = 0.001
current_task = asyncio.current_task


if sys.version_info >= (3, 11):

    class TimerWheel:
        """Coarse buckets for limits far away: one loop handle per bucket, not one per timer.

        Nearly every limit of a healthy call (pool 10 s, first byte 30 s, deadline 60 s) is disarmed long
        before it is reached, so paying ``loop.call_at`` (a TimerHandle, a heap push whose comparisons run
        in Python, then a cancel and a later pop) for each is waste: ~1.5 µs an attempt on our machines.
        A limit at least ``FAR`` seconds away is filed under ``int(limit / GRAIN)`` (a dict insert); the
        bucket's one handle fires at the bucket's start, never after any limit in it, and every timer still
        filed then re-arms itself, precisely with ``call_at`` once its limit is near. So expiry is as exact
        as with one handle per timer; only the bookkeeping for far limits changed. Bound to one loop.
        """

        GRAIN = 1.0  # seconds per bucket
        FAR = 2.0  # > GRAIN, so a re-filed timer always lands in a later bucket

        __slots__ = ("_buckets", "handles", "loop", "now")

        def __init__(self, loop: Any) -> None:
            self.loop = loop
            # The loop's clock: time.monotonic itself (a C call) when the loop keeps asyncio's own
            # ``time()``, which is ``return time.monotonic()`` behind a Python frame.
            own = getattr(loop, "__dict__", ())
            plain = type(loop).time is asyncio.BaseEventLoop.time and "time" not in own
            self.now: Any = time.monotonic if plain else loop.time
            self._buckets: dict[int, dict[PhaseTimer, None]] = {}
            self.handles = 0  # loop handles this wheel has armed, one per bucket (what it saves is visible)

        def add(self, timer: PhaseTimer, when: float) -> dict[PhaseTimer, None]:
            key = int(when / self.GRAIN)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = {}
                self.loop.call_at(key * self.GRAIN, self._fire, key)
                self.handles += 1
            bucket[timer] = None
            return bucket

        def filed(self) -> int:
            """Timers filed in its buckets now (a stopped timer leaves its bucket at once)."""
            return sum(len(bucket) for bucket in self._buckets.values())

        def _fire(self, key: int) -> None:
            bucket = self._buckets.pop(key, None)
            if bucket:
                for timer in list(bucket):
                    timer._wake()

    def _unfile(bucket: dict[PhaseTimer, None], timer: PhaseTimer) -> None:
        """Take a timer out of its wheel bucket. The bucket stays filed until its handle fires (up to the
        deadline, 60 s, away), and a dict never shrinks as keys are popped: a bucket that held 10,000
        callers, all cancelled, kept its 10,000-slot table, ~1 MB a round. ``clear()`` frees the table."""
        bucket.pop(timer, None)
        if not bucket:
            bucket.clear()

    class PhaseTimer:
        """Use as ``async with PhaseTimer(limit)``, or ``start()`` / ``stop()`` on a hot path (no coroutine
        objects; ``stop()`` says whether the timer's own cancel is pending, to be reported as a timeout).

        ``wheel``: file far limits in that TimerWheel when it belongs to the running loop.
        """

        __slots__ = ("_armed", "_cancelling", "_done", "_expired", "_limit", "_loop", "_task", "_wheel")

        def __init__(self, limit: float | None, wheel: TimerWheel | None = None) -> None:
            self._limit = limit
            self._wheel = wheel
            # The armed asyncio.TimerHandle, or the wheel bucket (a dict) this timer is filed in.
            self._armed: Any = None
            self._expired = False
            self._done = False

        def start(self, loop: Any = None) -> None:
            """Arm the timer for the current task; ``loop``: the running loop, when the caller has it."""
            if loop is None:
                loop = asyncio.get_running_loop()  # ~0.2 µs: worth passing in on a hot path
            task = current_task(loop)
            if task is None:
                raise RuntimeError("PhaseTimer must be used inside a task")
            self._task = task
            self._cancelling = task.cancelling()
            self._loop = loop
            when = self._limit
            if when is None:
                return
            wheel = self._wheel
            if wheel is None or wheel.loop is not loop:
                self._wheel = None
                self._armed = loop.call_at(when, self._fire)
            elif when - wheel.now() >= wheel.FAR:  # _arm and TimerWheel.add, written out: once an attempt
                key = int(when / wheel.GRAIN)
                bucket = wheel._buckets.get(key)
                if bucket is None:
                    bucket = wheel.add(self, when)
                else:
                    bucket[self] = None
                self._armed = bucket
            else:
                self._armed = loop.call_at(when, self._fire)

        async def __aenter__(self) -> PhaseTimer:
            self.start()
            return self

        def _arm(self, when: float) -> None:
            wheel = self._wheel
            if wheel is not None and when - wheel.now() >= wheel.FAR:
                self._armed = wheel.add(self, when)
            else:
                self._armed = self._loop.call_at(when, self._fire)

        def _disarm(self) -> None:
            armed, self._armed = self._armed, None
            if armed is not None:
                if type(armed) is dict:
                    _unfile(armed, self)
                else:
                    armed.cancel()

        def move(self, limit: float | None) -> None:
            """Set the limit for the next phase (absolute loop time; None: no limit)."""
            if self._done or self._expired:
                return
            old, self._limit = self._limit, limit
            if limit is None:
                self._disarm()
            elif self._armed is None or old is None or limit < old:
                self._disarm()
                self._arm(limit)
            # else: a later limit; the armed handle (or bucket) fires at or before the old one and re-arms

        def _wake(self) -> None:
            """Our wheel bucket came due (at or before the limit): re-arm, precisely once near."""
            self._armed = None
            limit = self._limit
            if limit is not None and not self._done and not self._expired:
                self._arm(limit)

        def _fire(self) -> None:
            self._armed = None
            limit = self._limit
            if limit is None or self._done or self._expired:
                return
            if self._loop.time() < limit - _SLACK:
                self._arm(limit)
                return
            self._expired = True
            self._task.cancel()

        def expired(self) -> bool:
            return self._expired

        @property
        def armed_in(self) -> str | None:
            """Where the timer waits: "wheel" (filed in a bucket), "loop" (a handle of its own) or None."""
            armed = self._armed
            if armed is None:
                return None
            return "wheel" if type(armed) is dict else "loop"

        def stop(self) -> bool:
            """Disarm. True when this timer expired and its cancel is the only one pending (no outside
            cancel arrived meanwhile): the CancelledError in flight then means "timed out". Idempotent."""
            if self._done:
                return False
            self._done = True
            armed = self._armed
            if armed is not None:
                self._armed = None
                if type(armed) is dict:  # _unfile, written out
                    armed.pop(self, None)
                    if not armed:
                        armed.clear()
                else:
                    armed.cancel()
            return self._expired and self._task.uncancel() <= self._cancelling

        async def __aexit__(
            self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
        ) -> None:
            if self.stop() and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc
            return None

else:  # pragma: no cover - Python 3.10: async_timeout (an aiohttp dependency) does the same job

    class TimerWheel:  # type: ignore[no-redef, unused-ignore]
        def __init__(self, loop: Any) -> None:
            self.loop = loop

    class PhaseTimer:  # type: ignore[no-redef, unused-ignore]
        def __init__(self, limit: float | None, wheel: Any = None) -> None:
            from async_timeout import timeout_at

            self._cm = timeout_at(limit)
            self._done = False

        def start(self, loop: Any = None) -> None:
            self._cm._do_enter()

        async def __aenter__(self) -> PhaseTimer:
            await self._cm.__aenter__()
            return self

        def move(self, limit: float | None) -> None:
            if limit is None:
                self._cm.reject()
            else:
                self._cm.update(limit)

        def expired(self) -> bool:
            return bool(self._cm.expired)

        def stop(self) -> bool:
            if self._done:
                return False
            self._done = True
            try:
                self._cm._do_exit(asyncio.CancelledError)
            except asyncio.TimeoutError:
                return True
            return False

        async def __aexit__(self, *exc: Any) -> None:
            self._done = True
            await self._cm.__aexit__(*exc)
