"""One async attempt: its clock, its slots, and the two backends it runs over.

An attempt runs in phases (the wait for a pool slot, the wait for the first byte, the body under the
call's deadline); one ``PhaseTimer`` per attempt is moved from phase to phase, and when it fires the
exception it caused is mapped to the phase that ran out (``_core``'s error kinds). ``AsyncPerfClient``
takes the same steps over either backend; what differs (how a request is sent, read and dropped) is
``AiohttpBackend`` / ``HttpxBackend`` (and ``_reqwest.PyreqwestBackend``, the optional native one),
whose methods return the backend's own awaitables, so the adapter adds no coroutine layer to the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from infra.http._async_bodies import AiohttpBody, HttpxBody
from infra.http._body import aiohttp_data, chunks_for
from infra.http._classify import FATAL, classify_aiohttp, classify_httpx
from infra.http._core import DEADLINE, FIRST_BYTE, POOL, Failure, HostState
from infra.http._lease import AsyncGate, take_now
from infra.http._routing import aclose_reset, areset_orphans, h2_connections, httpx_request
from infra.http._timer import PhaseTimer, TimerWheel

if TYPE_CHECKING:
    from infra.config.sections.http import TimeoutConfig
    from infra.http._reqwest import PyreqwestBackend

__all__ = [
    "AiohttpBackend",
    "AttemptClock",
    "Backend",
    "Classify",
    "HttpxBackend",
    "slots_clock",
]

_monotonic = time.monotonic
Classify = Callable[[BaseException], "str | None"]


class AttemptClock:
    """One attempt's timer and the phase it times (pool wait, first byte, body under the deadline)."""

    __slots__ = ("deadline_at", "phase", "timer", "when")

    def __init__(
        self, wheel: TimerWheel, deadline_at: float | None, phase: str, limit: float | None, now: float
    ) -> None:
        self.deadline_at = deadline_at
        self.phase = phase
        when = deadline_at if limit is None else now + limit  # earliest(), inlined: once per attempt
        if deadline_at is not None and when is not None and deadline_at < when:
            when = deadline_at
        self.when = when
        self.timer = PhaseTimer(self.when, wheel)

    def enter(self, phase: str, limit: float | None) -> None:
        """Move to ``phase``: ``limit`` seconds from now, never past the deadline."""
        self.phase = phase
        deadline_at = self.deadline_at
        when = deadline_at if limit is None else _monotonic() + limit
        if deadline_at is not None and when is not None and deadline_at < when:
            when = deadline_at
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


def slots_clock(
    host: HostState,
    global_gate: AsyncGate,
    stats: Any,
    wheel: TimerWheel,
    deadline_at: float | None,
    timeout: TimeoutConfig,
) -> AttemptClock:
    """An attempt's clock, started. When a host and a global slot are both free they are taken here, no
    await, and the clock times the first byte; otherwise it times the pool wait (phase ``POOL``) and the
    attempt queues (``wait_slots``) under it, then moves it on to the first byte. Either way the
    attempt's one ``except`` maps what the clock's cancel caused."""
    if take_now(host.slots, global_gate, host.metrics, stats):
        clock = AttemptClock(wheel, deadline_at, FIRST_BYTE, timeout.first_byte, _monotonic())
    else:
        clock = AttemptClock(wheel, deadline_at, POOL, timeout.pool, _monotonic())
    clock.timer.start()
    return clock


def _http11(resp: Any) -> str:
    return "HTTP/1.1"


class AiohttpBackend:
    """HTTP/1.1 over an aiohttp session (the fast path)."""

    __slots__ = ("session",)

    classify = staticmethod(classify_aiohttp)
    closes_itself = True  # read() leaves nothing open

    def __init__(self, session: Any) -> None:
        self.session = session

    def send(
        self,
        kind: str,
        method: str,
        url: str,
        params: Any,
        headers: Any,
        content: Any,
        json: Any,
        until: float | None = None,  # pyreqwest's (its requests' own limit); our timers bound this one
    ) -> Any:
        # allow_redirects=False: httpx's transport doesn't follow them either, and a redirect to another
        # origin would run under this origin's slot, breaker and metrics.
        # content: the call's prepared body (_body.request_body), as aiohttp takes it (_body.aiohttp_data).
        data = content if content is None or content.__class__ is bytes else aiohttp_data(content)
        return self.session.request(
            method, url, params=params, headers=headers, data=data, json=json, allow_redirects=False
        )

    # C-level callables (no Python frame per request): resp.status, "HTTP/1.1", resp.read(), AiohttpBody(...)
    status = operator.attrgetter("status")
    version = staticmethod(_http11)
    read = operator.methodcaller("read")
    body = AiohttpBody

    @staticmethod
    async def drop(resp: Any) -> None:
        resp.close()


class HttpxBackend:
    """HTTP/2 (and HTTP/1.1 with ``backend="httpx"``) over httpx transports, one per kind."""

    __slots__ = ("httpx", "timeout", "transport_for")

    classify = staticmethod(classify_httpx)
    closes_itself = False  # aread() closes at the end of the body; never leave one open

    def __init__(self, transport_for: Callable[[str], Any], connect: float | None) -> None:
        import httpx

        self.httpx = httpx
        self.transport_for = transport_for
        self.timeout = {"connect": connect, "read": None, "write": None, "pool": None}

    async def send(
        self,
        kind: str,
        method: str,
        url: str,
        params: Any,
        headers: Any,
        content: Any,
        json: Any,
        until: float | None = None,  # pyreqwest's (its requests' own limit); a reset frees the stream here
    ) -> Any:
        data = chunks_for(content)  # the call's prepared body (_body.request_body), for this try
        request = httpx_request(self.httpx, method, url, params, headers, data, json, dict(self.timeout))
        transport = self.transport_for(kind)
        try:
            resp = await transport.handle_async_request(request)
        except BaseException:
            # Cancelled or failed before the response headers: httpcore let go of the HTTP/2 stream
            # without a reset, which leaves it open (_routing._reset_orphans). Which connection it was on
            # httpcore doesn't say: its pool's HTTP/2 connections are looked over (the failure path only).
            if kind != "h1":
                await asyncio.shield(areset_orphans(h2_connections(transport), request))
            raise
        resp.request = request
        return resp

    status = operator.attrgetter("status_code")
    version = operator.attrgetter("http_version")
    read = operator.methodcaller("aread")
    body = HttpxBody

    @staticmethod
    async def drop(resp: Any) -> None:
        if not resp.is_closed:  # the body not read to its end (a cancel or the deadline during it)
            with contextlib.suppress(BaseException):
                await asyncio.shield(aclose_reset(resp))


Backend: TypeAlias = "AiohttpBackend | HttpxBackend | PyreqwestBackend"
"""The backends' common shape (``PyreqwestBackend``, in ``_reqwest``, is loaded only when chosen)."""
