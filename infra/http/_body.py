"""What the streamed-body readers share (``AiohttpBody``, ``HttpxBody``, ``SyncBody``): the response, the
connection slots it holds, the idle limit and the call's deadline, and how a read that failed is named.
Each reader only reads its backend's way and decides whether a timeout was the deadline's."""

from __future__ import annotations

from typing import Any, Protocol

from infra.http._core import READ
from infra.http._errors import DeadlineExceeded, HTTPError, TransportError

__all__ = ["Body", "Releasable"]


class Releasable(Protocol):
    """The slots a reader gives back exactly once (``AsyncLease``, or the sync client's ``Held``)."""

    @property
    def released(self) -> bool: ...

    def release(self) -> None: ...


class Body:
    """A streamed body's state: ``done`` once read to its end, ``deadline_at`` the call's deadline (None
    when only the idle timeout bounds the stream)."""

    __slots__ = ("_idle", "_lease", "_resp", "deadline_at", "done", "origin")

    def __init__(
        self, resp: Any, lease: Releasable, idle: float | None, deadline_at: float | None, origin: str
    ) -> None:
        self._resp = resp
        self._lease = lease
        self._idle = idle
        self.deadline_at = deadline_at
        self.done = False
        self.origin = origin

    def ran_out(self, deadline: bool) -> HTTPError:
        """The error of a read that waited too long: the call's deadline, or the idle timeout."""
        if deadline:
            return DeadlineExceeded("deadline exceeded while streaming the body", origin=self.origin)
        return TransportError(
            f"no body data for {self._idle}s (idle timeout)", kind="idle", origin=self.origin
        )

    def broke(self, exc: BaseException) -> TransportError:
        """The error of a read the backend failed."""
        return TransportError(f"stream broke: {type(exc).__name__}", kind=READ, origin=self.origin)
