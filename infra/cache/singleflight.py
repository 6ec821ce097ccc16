"""Single-flight: concurrent callers of one missing key share one computation.

Works across threads and asyncio tasks alike (a thread may lead while tasks wait, and the reverse):
waiting threads block on a ``threading.Event``; waiting tasks await a future that the leader resolves with
``loop.call_soon_threadsafe``. Every waiter gets the leader's result, or raises the leader's exception.
If the leader is cancelled or interrupted (a ``BaseException`` that is not an ``Exception``), waiters
are not failed with the leader's cancellation: they start over, and one of them leads.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # asyncio is imported on first async use only: it costs ~35 ms of cold import
    import asyncio

__all__ = ["LEASE_POLL_MAX", "LEASE_POLL_MIN", "Flight", "SingleFlight"]

#: first and longest sleep (seconds) between polls while another process holds a key's lease
LEASE_POLL_MIN = 0.005
LEASE_POLL_MAX = 0.05


class Flight:
    """One in-progress computation."""

    __slots__ = ("_lock", "_waiters", "done", "exc", "result", "retry")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.exc: BaseException | None = None
        self.retry = False
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def _finish(self, result: Any, exc: BaseException | None) -> None:
        with self._lock:
            self.result = result
            self.exc = exc
            self.retry = exc is not None and not isinstance(exc, Exception)
            self.done.set()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # the waiter's loop is already closed
                loop.call_soon_threadsafe(_resolve, fut)

    def wait(self) -> Any:
        self.done.wait()
        if self.exc is not None:
            raise self.exc
        return self.result

    async def await_result(self) -> Any:
        if not self.done.is_set():
            import asyncio

            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            with self._lock:
                pending = not self.done.is_set()
                if pending:
                    self._waiters.append((loop, fut))
            if pending:
                await fut
        if self.exc is not None:
            raise self.exc
        return self.result


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class SingleFlight:
    """Registry of in-progress computations by key."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, Flight] = {}
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # A flight led by a thread of the parent will never finish in the child.
        self._flights = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._flights)

    def join(self, key: Hashable) -> tuple[Flight, bool]:
        """The flight for ``key`` and whether the caller leads it (and must call ``finish``)."""
        with self._lock:
            f = self._flights.get(key)
            if f is not None:
                return f, False
            f = self._flights[key] = Flight()
            return f, True

    def finish(
        self, key: Hashable, flight: Flight, result: Any = None, exc: BaseException | None = None
    ) -> None:
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
        flight._finish(result, exc)
