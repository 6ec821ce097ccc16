"""AsyncPerfClient: pooled, retrying HTTP for asyncio (aiohttp for HTTP/1.1, httpx + h2 for HTTP/2).

Why aiohttp on the hot path: on loopback, 2000 GETs at concurrency 50, aiohttp did 11.5k req/s and httpx
0.28 306 req/s (its pool scans connections O(N²), encode/httpx#3215). HTTP/2 needs httpx + h2, so origins
listed in ``http2_hosts`` (or every origin with ``http2=True``) go through httpx instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

# _aiohttp_pool imports aiohttp here, not on first request: an import inside a call would eat that call's
# deadline. This module itself loads only when AsyncPerfClient is first used (infra.http's lazy __getattr__).
from infra.http._aiohttp_pool import make_session
from infra.http._async_bodies import AiohttpBody, HttpxBody, earliest, httpx_active, merge_headers
from infra.http._classify import FATAL
from infra.http._classify import classify_aiohttp as _classify_aiohttp
from infra.http._classify import classify_httpx as _classify_httpx
from infra.http._core import DEADLINE, FIRST_BYTE, POOL, Call, HostState
from infra.http._errors import HTTPError
from infra.http._ident import DEFAULT_HEADERS, prepare_headers
from infra.http._lease import AsyncGate, AsyncLease, pass_on, release_slots, wait_slots
from infra.http._origin import origin_of
from infra.http._policy import HTTPSettings
from infra.http._response import AsyncStreamResponse, Response, backend_headers
from infra.http._settings_args import DEFAULT, backend_for, resolve_settings, tls_context
from infra.http._timer import PhaseTimer, TimerWheel

__all__ = ["AsyncPerfClient"]

_monotonic = time.monotonic
get_running_loop = asyncio.get_running_loop
_ROUTES_MAX = 1024


class _Failure(Exception):
    """Internal: one attempt failed with ``kind``; ``cause`` is the backend exception."""

    def __init__(self, kind: str, cause: BaseException) -> None:
        self.kind = kind
        self.cause = cause


def _attempt_failure(
    exc: BaseException,
    classify: Any,
    timer: PhaseTimer,
    when: float | None,
    deadline_at: float | None,
    phase: str,
) -> _Failure | None:
    """Map a backend exception raised during one attempt to a ``_Failure``; None: not ours to map.

    Shared by the aiohttp and httpx attempt paths. A ``TimeoutError`` that our own timer didn't cause
    is the backend's (classified like any other error); one it caused is the deadline when the timer was
    armed for the call's deadline, else the phase (pool, first byte, body) that ran out.
    """
    if isinstance(exc, TimeoutError):
        if not timer.expired():
            return _Failure(classify(exc) or FATAL, exc)
        return _Failure(DEADLINE if (when is not None and when == deadline_at) else phase, exc)
    found = classify(exc)
    return None if found is None else _Failure(found, exc)


class _Stats:
    __slots__ = ("in_use",)

    def __init__(self) -> None:
        self.in_use = 0


def _verb(method: str) -> Any:
    """``AsyncPerfClient.get`` and its siblings: ``request(method, url, ...)`` on the fast path."""

    async def verb(
        self: AsyncPerfClient,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        json: Any = None,
        idempotent: bool = False,
        deadline: float | Any | None = DEFAULT,
        cache: bool | None = None,
    ) -> Response:
        if cache or (cache is None and self._settings.cache.enabled):
            return await self.request(
                method,
                url,
                params=params,
                headers=headers,
                content=content,
                json=json,
                idempotent=idempotent,
                deadline=deadline,
                cache=cache,
            )
        sent, retry_ok = prepare_headers(headers, idempotent)
        return await self._run(method, url, params, sent, content, json, retry_ok, deadline, False)

    verb.__name__ = method.lower()
    verb.__qualname__ = f"AsyncPerfClient.{verb.__name__}"
    verb.__doc__ = f"``request({method!r}, url, ...)``."
    return verb


class AsyncPerfClient:
    """Pooled, retrying async HTTP client. Use as ``async with AsyncPerfClient() as client:``.

    Every call has one deadline (``Timeouts.total`` or ``deadline=``) covering the pool wait, every
    attempt and the sleeps between; retries follow ``RetryPolicy``, limited per origin by a retry budget
    and a circuit breaker. Responses are our own ``Response`` type whatever backend ran.
    """

    def __init__(
        self,
        settings: HTTPSettings | None = None,
        *,
        cache_store: Any = None,
        verify: bool | str = True,
        **overrides: Any,
    ) -> None:
        self._settings = resolve_settings(settings, overrides)
        self._hosts: dict[str, HostState] = {}
        self._session: Any = None
        self._httpx: dict[str, Any] = {}
        self._global: AsyncGate | None = None
        # url -> (origin state, backend kind): origin_of + two lookups per call become one dict get.
        self._routes: dict[str, tuple[HostState, str]] = {}
        self._wheel: TimerWheel | None = None
        self._stats = _Stats()
        self._closed = False
        # An infra.cache.Cache to use instead of get_cache() (tests, embedding apps).
        self._cache: Any = cache_store
        # TLS for https origins: True verifies against the system CA roots, a path to a CA bundle trusts
        # that (private) CA, False turns verification off. Each transport gets its own SSLContext
        # (tls_context): httpx sets ALPN h2 on the context it is given, which would make aiohttp offer h2.
        self._verify = verify
        if self._settings.http2 or self._settings.http2_hosts or self._settings.backend == "httpx":
            import httpx  # noqa: F401 - loaded now so the first HTTP/2 call's deadline doesn't pay for it

    @classmethod
    def from_config(cls, section: Any = None, **overrides: Any) -> AsyncPerfClient:
        """Build from the ``http`` section of perf_config (the process-wide config when omitted)."""
        from infra.http._settings_args import settings_from_config

        return cls(settings_from_config(section), **overrides)

    @property
    def settings(self) -> HTTPSettings:
        return self._settings

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncPerfClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection. Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        clients, self._httpx = self._httpx, {}
        for client in clients.values():
            await client.aclose()

    def pool_stats(self) -> dict[str, int]:
        """Connections in use: ``in_use`` (our slots held), ``aiohttp_acquired`` (connections the aiohttp
        connector has handed out; -1 once closed) and, when HTTP/2 ran, ``httpx_active`` (httpx pool
        connections not idle)."""
        acquired = -1
        if self._session is not None:
            acquired = len(getattr(self._session.connector, "_acquired", ()))
        elif not self._closed:
            acquired = 0
        stats = {"in_use": self._stats.in_use, "aiohttp_acquired": acquired}
        if self._httpx:
            stats["httpx_active"] = httpx_active(self._httpx.values())
        return stats

    def breaker_state(self, url: str) -> str:
        """The circuit breaker state ("closed", "open", "half_open") for the origin of ``url``."""
        host = self._hosts.get(origin_of(url))
        return host.breaker.state if host is not None else "closed"

    def host_state(self, url: str) -> HostState:
        return self._host(origin_of(url))

    def _global_gate(self) -> AsyncGate:
        gate = self._global
        if gate is None:
            gate = self._global = AsyncGate(self._settings.limits.max_connections)
        return gate

    def _host(self, origin: str) -> HostState:
        host = self._hosts.get(origin)
        if host is None:
            self._global_gate()
            host = self._hosts[origin] = HostState(
                origin, self._settings, AsyncGate(self._settings.limits.max_per_host)
            )
        return host

    def _route(self, url: str) -> tuple[HostState, str]:
        """The origin state and backend kind for ``url`` (memoised per URL, bounded)."""
        route = self._routes.get(url)
        if route is None:
            origin = origin_of(url)
            route = (self._host(origin), backend_for(self._settings, url, origin))
            if len(self._routes) < _ROUTES_MAX:
                self._routes[url] = route
        return route

    def _timer_wheel(self) -> TimerWheel:
        # Bound to the loop of the first call, like the aiohttp session; a timer started on another loop
        # falls back to a handle of its own (PhaseTimer checks).
        wheel = self._wheel = TimerWheel(asyncio.get_running_loop())
        return wheel

    def _aiohttp(self) -> Any:
        if self._closed:
            raise RuntimeError("AsyncPerfClient is closed")
        session = self._session
        if session is None:
            s = self._settings
            session = self._session = make_session(
                limit=s.limits.max_connections,
                limit_per_host=s.limits.max_per_host,
                keepalive=s.limits.keepalive_expiry,
                connect=s.timeouts.connect,
                ssl=tls_context(self._verify),
                headers=DEFAULT_HEADERS,
            )
        return session

    def _httpx_client(self, kind: str) -> Any:
        """The httpx transport for ``kind``: "h1" (backend="httpx"), "h2" (ALPN over TLS) or "h2c"."""
        if self._closed:
            raise RuntimeError("AsyncPerfClient is closed")
        client = self._httpx.get(kind)
        if client is None:
            import httpx

            s = self._settings
            # The transport, not httpx.AsyncClient: the client logs every full URL at INFO, query-string
            # secrets included.
            client = self._httpx[kind] = httpx.AsyncHTTPTransport(
                http1=kind != "h2c",
                http2=kind != "h1",
                verify=tls_context(self._verify),
                limits=httpx.Limits(
                    max_connections=s.limits.max_connections,
                    max_keepalive_connections=s.limits.max_connections,
                    keepalive_expiry=s.limits.keepalive_expiry,
                ),
            )
        return client

    # -- public calls ------------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        json: Any = None,
        idempotent: bool = False,
        deadline: float | Any | None = DEFAULT,
        cache: bool | None = None,
    ) -> Response:
        """Send one logical request (with retries) and return the fully read response.

        A failing status is returned, not raised (call ``raise_for_status()``); transport failures that
        outlive their retries raise TransportError, and the deadline DeadlineExceeded.
        ``idempotent=True`` lets a POST / PATCH be retried, under one Idempotency-Key for all attempts.
        """
        method = method.upper()
        headers, retry_ok = prepare_headers(headers, idempotent)
        if cache or (cache is None and self._settings.cache.enabled):
            from infra.http._caching import async_cached_request

            return await async_cached_request(
                self,
                method,
                url,
                params=params,
                headers=headers,
                content=content,
                json=json,
                retry_ok=retry_ok,
                deadline=deadline,
                force=cache,
            )
        return await self._run(method, url, params, headers, content, json, retry_ok, deadline, False)

    # The verbs go straight to the retry loop (one coroutine layer less than through request()) unless
    # response caching applies; one definition, made per method by _verb below.
    get = _verb("GET")
    head = _verb("HEAD")
    options = _verb("OPTIONS")
    post = _verb("POST")
    put = _verb("PUT")
    patch = _verb("PATCH")
    delete = _verb("DELETE")

    def stream(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        json: Any = None,
        idempotent: bool = False,
        deadline: float | Any | None = DEFAULT,
    ) -> _StreamContext:
        """``async with client.stream("GET", url) as resp: async for line in resp.aiter_lines(): ...``

        Retries happen only until the response headers arrive; once the caller holds the stream nothing
        is retried. The connection is released on exit whatever happened (cancellation included).
        """
        method = method.upper()
        headers, retry_ok = prepare_headers(headers, idempotent)
        return _StreamContext(self, (method, url, params, headers, content, json, retry_ok, deadline, True))

    # -- the loop ----------------------------------------------------------------------------------------

    async def _run(
        self,
        method: str,
        url: str,
        params: Any,
        headers: Any,
        content: Any,
        json: Any,
        retry_ok: bool,
        deadline: Any,
        stream: bool,
    ) -> Response | AsyncStreamResponse:
        s = self._settings
        t = s.timeouts
        host, kind = self._routes.get(url) or self._route(url)
        started = _monotonic()
        total = t.total if deadline is DEFAULT else deadline
        deadline_at = started + total if total is not None else None
        call = Call(s.retry, host, method, retry_ok, started)
        metrics = host.metrics
        h2 = kind != "aiohttp"
        response: Response | AsyncStreamResponse
        delay: float | None
        while True:
            admission = call.admit()
            t0 = _monotonic()
            failure: _Failure | None = None
            if h2:
                try:
                    response = await self._once_httpx(
                        kind, host, method, url, params, headers, content, json, deadline_at, stream
                    )
                except _Failure as failed:
                    failure = failed
                except BaseException:
                    call.release()
                    raise
            else:
                # One attempt over aiohttp, written out here rather than in a method of its own: a coroutine
                # layer costs a frame on every resume, and this is the hot path. _once_httpx takes the same
                # steps over httpx.
                hs, gs = host.slots, self._global or self._global_gate()
                timer: PhaseTimer | None = None
                held = False
                resp: Any = None
                phase = POOL
                when = deadline_at
                try:
                    session = self._session or self._aiohttp()
                    # Both slots free: taken below without awaiting. Otherwise we queue, and the pool limit
                    # applies first.
                    free = hs.free > 0 and gs.free > 0
                    if free:
                        phase = FIRST_BYTE
                        limit = t.first_byte
                    else:
                        limit = t.pool
                    if limit is not None:
                        when = t0 + limit
                        if deadline_at is not None and deadline_at < when:
                            when = deadline_at
                    loop = get_running_loop()
                    timer = PhaseTimer(when, self._wheel or self._timer_wheel())
                    timer.start(loop)
                    if free:
                        hs.free -= 1
                        gs.free -= 1
                        self._stats.in_use += 1
                        metrics.active(1)
                    else:
                        # wait_slots, written out: under load nearly every call queues here, and a coroutine
                        # layer costs a frame on each resume. Per-host slot first, then a global one.
                        both = False  # handed the global slot with the host's (see _lease.pass_on)
                        if hs.free > 0:
                            hs.free -= 1
                        else:
                            fut = loop.create_future()
                            hs.waiters.append(fut)
                            try:
                                both = await fut
                            except BaseException:
                                if fut.done() and not fut.cancelled():
                                    # handed over, then cancelled before it ran: pass it on
                                    if fut.result():
                                        pass_on(hs, gs)
                                    else:
                                        hs.release()
                                raise
                        if not both:
                            try:
                                if gs.free > 0:
                                    gs.free -= 1
                                else:
                                    await gs.wait()
                            except BaseException:
                                hs.release()
                                raise
                        self._stats.in_use += 1
                        metrics.active(1)
                        metrics.pool_wait(_monotonic() - t0)
                    held = True
                    if phase == POOL:
                        phase = FIRST_BYTE
                        fb = t.first_byte
                        when = earliest(deadline_at, _monotonic() + fb if fb is not None else None)
                        timer.move(when)
                    # allow_redirects=False: httpx's transport doesn't follow them either, and a redirect to
                    # another origin would run under this origin's slot, breaker and metrics.
                    resp = await session.request(
                        method,
                        url,
                        params=params,
                        headers=headers,
                        data=content,
                        json=json,
                        allow_redirects=False,
                    )
                    if stream:
                        timer.stop()
                        body = AiohttpBody(
                            resp, AsyncLease(hs, gs, metrics, self._stats), t.idle, deadline_at, host.origin
                        )
                        held = False  # the body reader owns the slots from here
                        response = AsyncStreamResponse(
                            resp.status,
                            backend_headers(resp.headers),
                            None,
                            url=url,
                            method=method,
                            origin=host.origin,
                            body=body,
                        )
                    else:
                        if when != deadline_at:  # the body is bounded by the deadline alone
                            phase = DEADLINE
                            when = deadline_at
                            timer.move(when)
                        data = await resp.read()
                        timer.stop()
                        held = False
                        # release_slots, written out: the common case is nobody queued
                        self._stats.in_use -= 1
                        metrics.active(-1)
                        if hs.waiters or gs.waiters:
                            pass_on(hs, gs)
                        else:
                            gs.free += 1
                            hs.free += 1
                        response = Response(
                            resp.status,
                            backend_headers(resp.headers),
                            data,
                            url=url,
                            method=method,
                            origin=host.origin,
                        )
                except BaseException as exc:
                    ours = timer.stop() if timer is not None else False
                    if held:
                        if resp is not None:
                            resp.close()
                        release_slots(hs, gs, metrics, self._stats)
                    if ours and isinstance(exc, asyncio.CancelledError):
                        # Our timer's cancel, and no outside one: this phase (or the deadline) ran out.
                        timeout = TimeoutError()
                        timeout.__cause__ = exc
                        assert timer is not None
                        failure = _attempt_failure(
                            timeout, _classify_aiohttp, timer, when, deadline_at, phase
                        )
                    elif isinstance(exc, Exception) and timer is not None:
                        failure = _attempt_failure(exc, _classify_aiohttp, timer, when, deadline_at, phase)
                    if failure is None:
                        call.release()
                        raise
            now = _monotonic()
            if failure is not None:
                try:
                    delay = call.after_error(
                        failure.kind, failure.cause, now - t0, now, deadline_at, admission
                    )
                except HTTPError:
                    metrics.duration(method, None, now - started)
                    raise
            else:
                try:
                    delay = call.after_response(response, now - t0, now, deadline_at, admission)
                except HTTPError:
                    if stream:
                        await response._body.aclose()  # type: ignore[union-attr]
                    metrics.duration(method, response.status, now - started)
                    raise
                if delay is None:
                    if call.history:
                        response.history = tuple(call.history)
                    if stream:
                        # The configured total deadline bounds a stream up to its headers; its body then
                        # runs on the idle timeout (LLM / TTS streams outlive any sensible total). An
                        # explicit deadline= bounds the whole stream.
                        if deadline is DEFAULT:
                            response._body.deadline_at = None  # type: ignore[union-attr]
                        metrics.ttfb(method, now - started)
                    else:
                        metrics.duration(method, response.status, now - started)
                    return response
                if stream:
                    await response._body.aclose()  # type: ignore[union-attr]
            if delay:
                await asyncio.sleep(delay)
            answered = failure is None and not stream
            try:
                last = call.after_sleep(response if answered else None)
            except HTTPError:
                metrics.duration(method, response.status if answered else None, _monotonic() - started)
                raise
            if last is not None:  # the breaker opened meanwhile: this response is the call's answer
                metrics.duration(method, last.status, _monotonic() - started)
                return last  # type: ignore[no-any-return]

    async def _once_httpx(
        self,
        kind: str,
        host: HostState,
        method: str,
        url: str,
        params: Any,
        headers: Any,
        content: Any,
        json: Any,
        deadline_at: float | None,
        stream: bool,
    ) -> Response | AsyncStreamResponse:
        import httpx

        client = self._httpx_client(kind)
        t = self._settings.timeouts
        hs, gs = host.slots, self._global or self._global_gate()
        now = _monotonic()
        free = hs.free > 0 and gs.free > 0
        phase = FIRST_BYTE if free else POOL
        limit = t.first_byte if free else t.pool
        when = deadline_at if limit is None else earliest(deadline_at, now + limit)
        timer = PhaseTimer(when, self._wheel or self._timer_wheel())
        timer.start()
        held = False
        resp: Any = None
        try:
            if free:
                hs.free -= 1
                gs.free -= 1
                self._stats.in_use += 1
                host.metrics.active(1)
            else:
                await wait_slots(hs, gs, host.metrics, self._stats)
            held = True
            if phase == POOL:
                phase = FIRST_BYTE
                fb = t.first_byte
                when = earliest(deadline_at, _monotonic() + fb if fb is not None else None)
                timer.move(when)
            request = httpx.Request(
                method,
                url,
                params=params,
                headers=merge_headers(httpx, headers),
                content=content,
                json=json,
                extensions={"timeout": {"connect": t.connect, "read": None, "write": None, "pool": None}},
            )
            resp = await client.handle_async_request(request)
            resp.request = request
            if stream:
                timer.stop()
                h2body = HttpxBody(
                    resp, AsyncLease(hs, gs, host.metrics, self._stats), t.idle, deadline_at, host.origin
                )
                held = False  # the body reader owns the slots from here
                return AsyncStreamResponse(
                    resp.status_code,
                    backend_headers(resp.headers),
                    None,
                    url=url,
                    method=method,
                    origin=host.origin,
                    http_version=resp.http_version,
                    body=h2body,
                )
            if when != deadline_at:
                phase = DEADLINE
                when = deadline_at
                timer.move(when)
            data = await resp.aread()
        except BaseException as exc:
            ours = timer.stop()
            if held:
                release_slots(hs, gs, host.metrics, self._stats)
                if resp is not None and not resp.is_closed:
                    with contextlib.suppress(BaseException):
                        await asyncio.shield(resp.aclose())
            if ours and isinstance(exc, asyncio.CancelledError):
                timeout = TimeoutError()
                timeout.__cause__ = exc
                failure = _attempt_failure(timeout, _classify_httpx, timer, when, deadline_at, phase)
                raise failure from timeout  # type: ignore[misc]
            if not isinstance(exc, Exception):
                raise
            failure = _attempt_failure(exc, _classify_httpx, timer, when, deadline_at, phase)
            if failure is None:
                raise
            raise failure from exc
        timer.stop()
        release_slots(hs, gs, host.metrics, self._stats)
        if not resp.is_closed:  # aread() closes it at the end of the body; never leave one open
            with contextlib.suppress(BaseException):
                await asyncio.shield(resp.aclose())
        return Response(
            resp.status_code,
            backend_headers(resp.headers),
            data,
            url=url,
            method=method,
            origin=host.origin,
            http_version=resp.http_version,
        )


class _StreamContext:
    """``async with client.stream(...) as response``: closes the response on exit, always."""

    __slots__ = ("_args", "_client", "_response", "_started")

    def __init__(self, client: AsyncPerfClient, args: tuple[Any, ...]) -> None:
        self._client = client
        self._args = args
        self._response: AsyncStreamResponse | None = None
        self._started = 0.0

    async def __aenter__(self) -> AsyncStreamResponse:
        self._started = _monotonic()
        response = await self._client._run(*self._args)
        assert isinstance(response, AsyncStreamResponse)
        self._response = response
        return response

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        response, self._response = self._response, None
        if response is not None:
            await response.aclose()
            # The whole stream, headers to close, is the request's duration (TTFB is recorded apart).
            host = self._client._hosts.get(response.origin)
            if host is not None:
                host.metrics.duration(response.method, response.status, _monotonic() - self._started)
