"""PhaseTimer: one timer per attempt whose limit moves with the phase, cheaply.

An attempt passes through phases with different limits: the pool wait (Timeouts.pool), the wait for
response headers (Timeouts.first_byte), the body (the call's deadline), each capped by the deadline. With
``asyncio.timeout`` each phase costs a context or a reschedule (a cancel plus a heap push, ~3.5 µs each
on our machines, a tenth of the layer's whole per-request budget). Here moving the limit *later* is an
attribute write: the armed handle fires at the old limit, sees the new one and re-arms itself. Only a
limit moved *earlier* touches the loop. Expiry cancels the task and surfaces as TimeoutError on exit,
with the same cancel/uncancel bookkeeping as ``asyncio.timeout`` (a concurrent outside cancel wins).
"""

from __future__ import annotations

import asyncio
import sys
from types import TracebackType
from typing import Any

__all__ = ["PhaseTimer"]

# A handle runs when the loop's clock is within its resolution of the deadline; treat "that close" as
# reached rather than re-arming for a few microseconds.
_SLACK = 0.001


if sys.version_info >= (3, 11):

    class PhaseTimer:
        __slots__ = ("_cancelling", "_done", "_expired", "_handle", "_limit", "_loop", "_task")

        def __init__(self, limit: float | None) -> None:
            self._limit = limit
            self._handle: asyncio.Handle | None = None
            self._expired = False
            self._done = False
            self._loop: Any = None
            self._task: Any = None
            self._cancelling = 0

        async def __aenter__(self) -> PhaseTimer:
            task = asyncio.current_task()
            if task is None:
                raise RuntimeError("PhaseTimer must be used inside a task")
            self._task = task
            self._loop = asyncio.get_running_loop()
            self._cancelling = task.cancelling()
            if self._limit is not None:
                self._arm(self._limit)
            return self

        def _arm(self, when: float) -> None:
            self._handle = self._loop.call_at(when, self._fire)

        def move(self, limit: float | None) -> None:
            """Set the limit for the next phase (absolute loop time; None: no limit)."""
            if self._done or self._expired:
                return
            old, self._limit = self._limit, limit
            if limit is None:
                if self._handle is not None:
                    self._handle.cancel()
                    self._handle = None
                return
            if self._handle is None or old is None or limit < old:
                if self._handle is not None:
                    self._handle.cancel()
                self._arm(limit)
            # else: a later limit; the armed handle fires at the old one and re-arms (no heap work now)

        def _fire(self) -> None:
            self._handle = None
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

        async def __aexit__(
            self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
        ) -> None:
            self._done = True
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            # Ours is the only pending cancel (no outside one arrived meanwhile): report a timeout.
            ours = self._expired and self._task.uncancel() <= self._cancelling
            if ours and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc
            return None

else:  # pragma: no cover - Python 3.10: async_timeout (an aiohttp dependency) does the same job

    class PhaseTimer:  # type: ignore[no-redef, unused-ignore]
        def __init__(self, limit: float | None) -> None:
            from async_timeout import timeout_at

            self._cm = timeout_at(limit)

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

        async def __aexit__(self, *exc: Any) -> None:
            await self._cm.__aexit__(*exc)
