"""HTTP exceptions raised by AsyncPerfClient / PerfClient (see the tree in ``infra.errors``).

Every error carries ``history``: one :class:`Attempt` per try (status or error kind, duration), so a caller
or a log line can tell "three 503s then a reset" from "one slow connect". Backend exceptions (aiohttp, httpx)
stay reachable as ``__cause__``. Messages name the origin only (scheme://host:port), never path, query or
headers, so an API key in a URL never reaches a log line through an exception message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra.errors import PerfInfraError

if TYPE_CHECKING:
    from infra.http._response import Response

__all__ = [
    "Attempt",
    "CircuitOpenError",
    "DeadlineExceeded",
    "HTTPError",
    "HTTPStatusError",
    "PoolTimeout",
    "RetryAfterTooLong",
    "RetryBudgetExhausted",
    "TransportError",
]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of a logical call: what came back (a status or an error kind) and how long it took."""

    number: int
    status: int | None
    error: str | None
    elapsed: float
    retry_after: float | None = None

    def __str__(self) -> str:
        what = str(self.status) if self.status is not None else (self.error or "?")
        return f"#{self.number}:{what}({self.elapsed * 1000:.0f}ms)"


class HTTPError(PerfInfraError):
    """Root of the HTTP client's errors. ``origin`` is scheme://host:port; ``history`` the attempts made."""

    def __init__(
        self,
        message: str,
        *,
        origin: str = "",
        method: str = "",
        history: tuple[Attempt, ...] = (),
        response: Response | None = None,
    ) -> None:
        self.origin = origin
        self.method = method
        self.history = history
        self.response = response
        text = message
        if origin:
            text = f"{method} {origin}: {message}" if method else f"{origin}: {message}"
        if history:
            text += " [attempts: " + " ".join(str(a) for a in history) + "]"
        super().__init__(text)

    @property
    def attempts(self) -> int:
        """How many tries were sent (a call the circuit breaker refused sent none: 0)."""
        return len(self.history)


class TransportError(HTTPError):
    """Connect, read or reset failure, after the retries allowed for it ran out (or none were allowed)."""

    def __init__(self, message: str, *, kind: str = "read", **kw: object) -> None:
        self.kind = kind
        super().__init__(message, **kw)  # type: ignore[arg-type]


class PoolTimeout(TransportError):
    """No connection slot for the origin freed up within ``Timeouts.pool``. Never retried."""

    def __init__(self, message: str, **kw: object) -> None:
        super().__init__(message, kind="pool", **kw)


class HTTPStatusError(HTTPError):
    """``Response.raise_for_status()`` on a 4xx / 5xx response; ``response`` is the final response."""

    @property
    def status(self) -> int:
        return self.response.status if self.response is not None else 0


class DeadlineExceeded(HTTPError):
    """The one deadline of the logical call (pool wait, every attempt, the sleeps between) ran out."""

    def __init__(self, message: str, *, deadline: float | None = None, **kw: object) -> None:
        self.deadline = deadline
        super().__init__(message, **kw)  # type: ignore[arg-type]


class RetryAfterTooLong(DeadlineExceeded):
    """The server asked to wait (Retry-After) past the deadline or the configured cap; failed at once.

    ``retry_after`` is the wait the server asked for, in seconds; ``response`` the response that asked.
    """

    def __init__(self, message: str, *, retry_after: float, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class CircuitOpenError(HTTPError):
    """The origin's circuit breaker is open (or its half-open probe slots are taken).

    Raised before the first try (no I/O was done: ``history`` is empty, ``attempts`` 0, the call counted
    with ``code="refused"``), or when the breaker opened during the backoff before a retry of a try that
    got no response (``history`` lists the tries that were sent; the retry was not). ``retry_in`` is the
    time until the breaker lets a probe through, in seconds.
    """

    def __init__(self, message: str, *, retry_in: float = 0.0, **kw: object) -> None:
        self.retry_in = retry_in
        super().__init__(message, **kw)  # type: ignore[arg-type]


class RetryBudgetExhausted(HTTPError):
    """A retry was called for but the origin's retry budget denied it (the upstream is failing broadly)."""
