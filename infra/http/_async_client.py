"""AsyncPerfClient: pooled, retrying HTTP for asyncio (aiohttp for HTTP/1.1, httpx + h2 for HTTP/2).

Why aiohttp on the hot path: on loopback, 2000 GETs at concurrency 50, aiohttp did 11.5k req/s and httpx
0.28 306 req/s (its pool scans connections O(N²), encode/httpx#3215). HTTP/2 needs httpx + h2, so origins
listed in ``http2_hosts`` (or every origin with ``http2=True``) go through httpx instead.

The retry loop is ``_core.steps``, the same generator PerfClient runs: ``_run_reference`` performs its
effects with ``await`` (every decision is ``_core.Call``'s). One attempt (``_once``) takes the slots
under the pool limit, sends, and reads the body or hands it to a stream, the same steps over either
backend (``_attempt.AiohttpBackend`` / ``HttpxBackend``). ``_run``, what the verbs run, is those two
written out in one coroutine for speed (a listed hot path, held to its twin by a test).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any

from infra.config.sections.http import RETRY_STATUSES

# _aiohttp_pool imports aiohttp here, not on first request: an import inside a call would eat that call's
# deadline. This module itself loads only when AsyncPerfClient is first used (infra.http's lazy __getattr__).
from infra.http._aiohttp_pool import handed_out, make_session
from infra.http._alpn import Stats, async_host
from infra.http._attempt import AiohttpBackend, AttemptClock, Backend, HttpxBackend, slots_clock
from infra.http._breaker import CLOSED as BREAKER_CLOSED
from infra.http._breaker import FAILURE, NORMAL, SUCCESS
from infra.http._caching import async_cached_request
from infra.http._client_base import ClientBase, StreamContext
from infra.http._core import (
    BREAKER_FAILURE_STATUSES,
    DEADLINE,
    FIRST_BYTE,
    POOL,
    Call,
    Failure,
    HostState,
    steps,
)
from infra.http._ident import DEFAULT_HEADERS
from infra.http._lease import (
    AsyncGate,
    AsyncLease,
    pass_on,
    pass_on_async,
    release_slots,
    wait_slots,
)
from infra.http._origin import origin_of
from infra.http._response import AsyncStreamResponse, Response, backend_headers, received
from infra.http._routing import (
    DEFAULT,
    PYREQWEST_KINDS,
    CallArgs,
    Default,
    RequestOptions,
    StreamOptions,
    active_connections,
    async_backend_for,
    call_args,
    httpx_transport,
    native_http2,
    require_pyreqwest,
    tls_context,
)
from infra.http._timer import TimerWheel

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from infra.http._reqwest import PyreqwestBackend


__all__ = ["AsyncPerfClient", "install_backend"]

_monotonic = time.monotonic
get_running_loop = asyncio.get_running_loop
_ROUTES_MAX = 1024


class AsyncPerfClient(ClientBase):
    """Pooled, retrying async HTTP client. Use as ``async with AsyncPerfClient() as client:``.

    Takes the ``http`` settings section (``AsyncPerfClient(config.http)``) and/or keywords naming its fields
    (``AsyncPerfClient(retry=RetryConfig(attempts=1), http2=True)``); also ``cache_store=`` (an
    ``infra.cache.Cache`` for the response cache) and ``verify=`` (TLS: True, a CA bundle path, or False).
    Every call has one deadline (``timeout.total`` or ``deadline=``) covering the pool wait, every attempt
    and the sleeps between; retries follow ``retry``, limited per origin by a retry budget and a circuit
    breaker. Responses are our own ``Response`` type whatever backend ran.
    """

    def _open(self) -> None:
        self._cache_on = self._settings.cache.enabled
        self._session: Any = None
        self._httpx: dict[str, Any] = {}
        self._aiohttp_backend: AiohttpBackend | None = None
        self._httpx_backend: HttpxBackend | None = None
        self._reqwest: dict[str, Any] = {}  # kind -> pyreqwest client (backend="pyreqwest")
        self._reqwest_backend: PyreqwestBackend | None = None
        self._global = AsyncGate(self._settings.max_connections)
        # url -> (origin state, backend kind): origin_of + two lookups per call become one dict get.
        self._routes: dict[str, tuple[HostState, str]] = {}
        self._wheel: TimerWheel | None = None
        self._stats = Stats()
        s = self._settings
        if s.backend == "httpx" or ((s.http2 or s.http2_hosts) and not native_http2(s)):
            import httpx  # noqa: F401 - loaded now so the first HTTP/2 call's deadline doesn't pay for it
        require_pyreqwest(self._settings)  # pyreqwest chosen: loaded now, or a ConfigError saying why not

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
        self._aiohttp_backend = None
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        clients, self._httpx = self._httpx, {}
        for client in clients.values():
            await client.aclose()
        self._reqwest_backend = None
        natives, self._reqwest = self._reqwest, {}
        for native in natives.values():
            await native.close()

    def pool_stats(self) -> dict[str, int]:
        """Connections in use: ``in_use`` (our slots held), ``aiohttp_acquired`` (connections the aiohttp
        connector has handed out; -1 once closed) and, when HTTP/2 ran, ``httpx_active`` (httpx pool
        connections not idle), or on pyreqwest ``reqwest_active`` (requests holding a connection or stream,
        from their send to their body's end or close: waits for headers too); ``http2_declined``, once any:
        origins listed for HTTP/2 that answered over HTTP/1.x (held to HTTP/1.1's limits, see ``_alpn``)."""
        acquired = -1
        if self._session is not None:
            acquired = handed_out(self._session.connector)
        elif not self._closed:
            acquired = 0
        stats = {"in_use": self._stats.in_use, "aiohttp_acquired": acquired}
        if self._httpx:
            stats["httpx_active"] = active_connections(self._httpx.values())
        if self._reqwest_backend is not None:
            stats["reqwest_active"] = self._reqwest_backend.active
        if self._stats.http2_declined:
            stats["http2_declined"] = self._stats.http2_declined
        return stats

    def _host(self, origin: str) -> HostState:
        host = self._hosts.get(origin)
        if host is None:
            host = self._hosts[origin] = async_host(self._settings, origin, self._global, self._stats)
        return host

    def _route(self, url: str) -> tuple[HostState, str]:
        """The origin state and backend kind for ``url`` (memoised per URL, bounded)."""
        route = self._routes.get(url)
        if route is None:
            origin = origin_of(url)
            route = (self._host(origin), async_backend_for(self._settings, url, origin))
            if len(self._routes) < _ROUTES_MAX:
                self._routes[url] = route
        return route

    def _timer_wheel(self) -> TimerWheel:
        # Bound to the loop of the first call, like the aiohttp session; a timer started on another loop
        # falls back to a handle of its own (PhaseTimer checks).
        wheel = self._wheel = TimerWheel(asyncio.get_running_loop())
        return wheel

    def _backend(self, kind: str) -> Backend:
        """The backend for a route's kind: aiohttp, pyreqwest for "rq-*", or httpx for "h1" / "h2" / "h2c"
        (opened on first use)."""
        if kind == "aiohttp":
            return self._aiohttp_backend or self._open_aiohttp()
        if kind in PYREQWEST_KINDS:
            return self._reqwest_backend or self._open_pyreqwest()
        if self._httpx_backend is None:
            self._httpx_backend = HttpxBackend(self._httpx_client, self._settings.timeout.connect)
        return self._httpx_backend

    def _open_aiohttp(self) -> AiohttpBackend:
        if self._closed:
            raise RuntimeError("AsyncPerfClient is closed")
        s = self._settings
        self._session = make_session(
            limit=s.max_connections,
            limit_per_host=s.max_per_host,
            keepalive=s.keepalive_expiry,
            connect=s.timeout.connect,
            ssl=tls_context(self._verify),
            headers=DEFAULT_HEADERS,
            resend=not s.enabled,
        )
        backend = self._aiohttp_backend = AiohttpBackend(self._session)
        return backend

    def _open_pyreqwest(self) -> PyreqwestBackend:
        from infra.http._reqwest import PyreqwestBackend

        if self._closed:
            raise RuntimeError("AsyncPerfClient is closed")
        # enabled: false keeps a plain client's one resend on a dropped keep-alive connection (as aiohttp's)
        resend = not self._settings.enabled
        backend = self._reqwest_backend = PyreqwestBackend(self._reqwest, self._pyreqwest_client, resend)
        return backend

    def _per_kind(self, clients: dict[str, Any], kind: str, make: Callable[[str], Any]) -> Any:
        """``clients[kind]``, made by ``make(kind)`` on first use; a closed client hands out none."""
        if self._closed:
            raise RuntimeError("AsyncPerfClient is closed")
        client = clients.get(kind)
        if client is None:
            client = clients[kind] = make(kind)
        return client

    def _pyreqwest_client(self, kind: str) -> Any:
        """The pyreqwest client for ``kind`` ("rq-h1", "rq-h2", "rq-h2c"), under the client's limits."""
        return self._per_kind(self._reqwest, kind, self._make_pyreqwest)

    def _make_pyreqwest(self, kind: str) -> Any:
        from infra.http._reqwest import make_client, read_limit

        s = self._settings
        return make_client(
            kind,
            max_connections=s.max_connections,
            max_per_host=s.max_per_host,
            keepalive=s.keepalive_expiry,
            connect=s.timeout.connect,
            verify=self._verify,
            read=read_limit(s.timeout.first_byte, s.timeout.idle),
        )

    def _httpx_client(self, kind: str) -> Any:
        """The httpx transport for ``kind``: "h1" (backend="httpx"), "h2" (ALPN over TLS) or "h2c"."""
        return self._per_kind(self._httpx, kind, self._make_httpx)

    def _make_httpx(self, kind: str) -> Any:
        return httpx_transport(self._settings, kind, self._verify, sync=False)

    # -- public calls ------------------------------------------------------------------------------------

    async def request(self, method: str, url: str, **options: Unpack[RequestOptions]) -> Response:
        """Send one logical request (with retries) and return the fully read response.

        A failing status is returned, not raised (call ``raise_for_status()``); transport failures that
        outlive their retries raise TransportError, and the deadline DeadlineExceeded. The keywords:
        ``RequestOptions`` (params, headers, content, json, idempotent, deadline, cache).
        """
        return await self._send(method.upper(), url, options)

    def _send(self, method: str, url: str, options: RequestOptions) -> Coroutine[Any, Any, Response]:
        """The coroutine that answers a request: through the response cache when it applies, else the
        retry loop itself (so a verb adds no coroutine layer of its own)."""
        args, cache = call_args(method, url, False, **options)
        if cache or (cache is None and self._cache_on):
            return async_cached_request(self._cache_store, self._settings.cache, args, cache, self._run)
        return self._run(args)

    async def get(self, url: str, **options: Unpack[RequestOptions]) -> Response:
        """``request("GET", url, ...)``."""
        return await self._send("GET", url, options)

    async def head(self, url: str, **options: Unpack[RequestOptions]) -> Response:
        """``request("HEAD", url, ...)``."""
        return await self._send("HEAD", url, options)

    async def options(self, url: str, **options: Unpack[RequestOptions]) -> Response:
        """``request("OPTIONS", url, ...)``."""
        return await self._send("OPTIONS", url, options)

    async def post(self, url: str, **options: Unpack[RequestOptions]) -> Response:
        """``request("POST", url, ...)``."""
        return await self._send("POST", url, options)

    async def put(self, url: str, **options: Unpack[RequestOptions]) -> Response:
        """``request("PUT", url, ...)``."""
        return await self._send("PUT", url, options)

    async def patch(self, url: str, **options: Unpack[RequestOptions]) -> Response:
        """``request("PATCH", url, ...)``."""
        return await self._send("PATCH", url, options)

    async def delete(self, url: str, **options: Unpack[RequestOptions]) -> Response:
        """``request("DELETE", url, ...)``."""
        return await self._send("DELETE", url, options)

    def stream(self, method: str, url: str, **options: Unpack[StreamOptions]) -> _StreamContext:
        """``async with client.stream("GET", url) as resp: async for line in resp.aiter_lines(): ...``

        Retries happen only until the response headers arrive; once the caller holds the stream nothing
        is retried. The connection is released on exit whatever happened (cancellation included).
        """
        return _StreamContext(self, call_args(method.upper(), url, True, **options)[0])

    # -- the loop ----------------------------------------------------------------------------------------

    async def _run(self, args: CallArgs) -> Response:
        """One logical call, written out for speed: ``_run_reference`` (the shared ``steps`` loop over
        ``_once``) with both inlined, and the host-slot queue of ``wait_slots``, so a request resumes one
        coroutine frame of ours instead of three and runs no generator (callgrind, bench/callgrind_http.py:
        ~15k fewer instructions a request, 1.09x -> 1.05x of aiohttp's; BENCHMARKS.md). Issue 18 cut the
        success path further (no Call object until a call needs one, the admission and the first try's
        answer written out): 1.05x -> 1.01x. tests/http/test_http_hot_path.py holds the two to the same
        answers; change them together."""
        method, url, params, headers, content, json, retry_ok, deadline, stream = args
        host, kind = self._routes.get(url) or self._route(url)
        started = _monotonic()
        total: float | None = self._settings.timeout.total
        if not isinstance(deadline, Default):
            total = deadline
        deadline_at = started + total if total is not None else None
        until = None if stream and deadline is DEFAULT else deadline_at  # the body's end too, if any
        budget = host.budget
        if not budget.full:  # Call's deposit, made here: the Call itself only once the call needs one
            budget.deposit()
        # a client's kinds never mix httpx and pyreqwest ("rq-*"): its settings fix which (async_backend_for)
        backend = (self._aiohttp_backend if kind == "aiohttp" else self._reqwest_backend) or self._backend(
            kind
        )
        t = self._settings.timeout
        stats, metrics = self._stats, host.metrics
        wheel = self._wheel or self._timer_wheel()
        response: Response | AsyncStreamResponse
        delay: float | None
        call: Call | None = None  # made when a first try's answer is not the call's (Call.admitted)
        breaker = host.breaker
        if breaker.state == BREAKER_CLOSED or not breaker.enabled:  # Call.admit's common case, written out
            admission = NORMAL
        else:
            call = Call(self._settings.retry, host, method, retry_ok, started, deposit=False)
            admission = call.admit()  # a retry goes under the same admission
        while True:
            t0 = _monotonic()
            # -- one attempt: _once ----------------------------------------------------------------------
            hs, gs = host.slots, host.shared  # each try's: a TLS HTTP/2 origin's change once it answers
            held = hs.free > 0 and gs.free > 0  # slots_clock and take_now, written out
            if held:
                hs.free -= 1
                gs.free -= 1
                stats.in_use += 1
                metrics.in_use += 1
                clock = AttemptClock(wheel, deadline_at, FIRST_BYTE, t.first_byte, t0)
            else:
                clock = AttemptClock(wheel, deadline_at, POOL, t.pool, t0)
            loop = get_running_loop()
            clock.timer.start(loop)
            resp: Any = None
            failure = None
            try:
                if not held:
                    # wait_slots, written out (its host-slot queue): at c=50 on 6 slots nearly every call
                    # queues here, and a coroutine layer costs a frame on each resume.
                    both: Any = False
                    if hs.free > 0:
                        hs.free -= 1
                    else:
                        fut = loop.create_future()
                        hs.waiters.append(fut)
                        try:
                            both = await fut
                        except BaseException:
                            if fut.done() and not fut.cancelled():  # handed over, then cancelled: pass it on
                                if fut.result():
                                    pass_on(hs, fut.result())
                                else:
                                    hs.release()
                            raise
                    if both:
                        gs = both  # handed a slot of that global gate with it (_lease.pass_on)
                    else:
                        try:
                            if gs.free > 0:
                                gs.free -= 1
                            else:
                                await gs.wait()
                        except BaseException:
                            hs.release()
                            raise
                    stats.in_use += 1
                    metrics.in_use += 1
                    metrics.pool_wait(_monotonic() - t0)
                    held = True
                    clock.enter(FIRST_BYTE, t.first_byte)
                resp = await backend.send(kind, method, url, params, headers, content, json, until)
                if host.alpn is not None:  # a TLS HTTP/2 origin: which HTTP ALPN gave (_alpn)
                    host.alpn.seen(host, backend.version(resp))
                if stream:
                    clock.timer.stop()
                    body = backend.body(
                        resp, AsyncLease(hs, gs, metrics, stats), t.idle, deadline_at, host.origin
                    )
                    held = False  # the body reader owns the slots from here
                    response = AsyncStreamResponse(
                        backend.status(resp),
                        backend_headers(resp.headers),
                        None,
                        url=url,
                        method=method,
                        origin=host.origin,
                        http_version=backend.version(resp),
                        body=body,
                    )
                else:
                    if clock.when != deadline_at:  # the body is bounded by the deadline alone (enter)
                        clock.phase, clock.when = DEADLINE, deadline_at
                        clock.timer.move(deadline_at)
                    data = await backend.read(resp)
            except BaseException as exc:
                ours = clock.timer.stop()
                if held:
                    release_slots(hs, gs, metrics, stats)  # slots first: the drop may be cancelled
                    if resp is not None:
                        await backend.drop(resp)
                failure = clock.failure(exc, ours, backend.classify)
                if failure is None:
                    if call is None:  # release counts the call ("cancelled" / "error"): it needs one
                        call = Call.admitted(self._settings.retry, host, method, retry_ok, started, admission)
                    call.release()
                    raise
            else:
                if not stream:
                    clock.timer.stop()
                    stats.in_use -= 1  # release_slots, written out: most often nobody queues
                    metrics.in_use -= 1
                    if hs.waiters or gs.waiters:
                        pass_on_async(hs, gs)
                    else:
                        gs.free += 1
                        hs.free += 1
                    if not backend.closes_itself:
                        await backend.drop(resp)
                    status, version = backend.status(resp), backend.version(resp)
                    response = received(status, resp.headers, data, url, method, host.origin, version)
            # -- what follows it: steps ------------------------------------------------------------------
            answered = None  # the response to hand back if the breaker stops the retry
            if failure is not None:
                if call is None:
                    call = Call.admitted(self._settings.retry, host, method, retry_ok, started, admission)
                delay = call.on_error(failure.kind, failure.cause, t0, _monotonic(), deadline_at, admission)
            else:
                status = response.status
                if call is None:  # the first try
                    if not stream and status not in RETRY_STATUSES:
                        # Call.on_response's common case, written out: the first try's answer
                        breaker.record(FAILURE if status in BREAKER_FAILURE_STATUSES else SUCCESS, admission)
                        metrics.duration(method, status, _monotonic() - started)
                        return response
                    call = Call.admitted(self._settings.retry, host, method, retry_ok, started, admission)
                try:
                    delay = call.on_response(response, t0, _monotonic(), deadline_at, admission, stream)
                except BaseException:
                    if stream:
                        await response.aclose()  # type: ignore[union-attr]
                    raise
                if delay is None:
                    if stream and deadline is DEFAULT:
                        response.drop_deadline()  # type: ignore[union-attr]
                    return response
                if stream:
                    await response.aclose()  # type: ignore[union-attr]
                else:
                    answered = response
            if delay:
                try:
                    await asyncio.sleep(delay)
                except BaseException:
                    call.release()  # cancelled during the backoff: counted, its retry's token back
                    raise
            last = call.on_wake(answered, _monotonic())
            if last is not None:
                return last

    async def _run_reference(self, args: CallArgs) -> Response:
        """One logical call, the plain twin of ``_run``: PerfClient._run with ``await`` (the ``steps`` loop
        over one attempt, ``_once``; every decision is ``Call``'s)."""
        host, kind = self._routes.get(args.url) or self._route(args.url)
        call, deadline_at = self._begin(args, host)
        backend = self._backend(kind)
        flow = steps(call, deadline_at, args.stream, args.deadline is DEFAULT)
        effect = flow.send(None)  # the breaker's admission, then the first attempt
        while True:
            outcome: Any = None
            if effect is None:
                try:
                    outcome = await self._once(backend, kind, host, args, deadline_at)
                except Failure as failure:
                    outcome = failure
                except BaseException:
                    call.release()
                    raise
            elif effect.__class__ is float:
                try:
                    await asyncio.sleep(effect)
                except BaseException:
                    call.release()  # cancelled during the backoff: counted, its retry's token back
                    raise
            else:
                await effect.aclose()
            try:
                effect = flow.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def _once(
        self, backend: Backend, kind: str, host: HostState, args: CallArgs, deadline_at: float | None
    ) -> Response | AsyncStreamResponse:
        """One attempt: slots, request, then the body read (or handed to a stream); a failure it can name
        raised as ``Failure``."""
        method, url, params, headers, content, json, _, _, stream = args
        t = self._settings.timeout
        hs, gs = host.slots, host.shared
        wheel = self._wheel or self._timer_wheel()
        clock = slots_clock(host, gs, self._stats, wheel, deadline_at, t)
        held = clock.phase is not POOL
        resp: Any = None
        try:
            if not held:
                gs = await wait_slots(hs, gs, host.metrics, self._stats)
                held = True
                clock.enter(FIRST_BYTE, t.first_byte)
            until = None if args.stream and args.deadline is DEFAULT else deadline_at  # as _run's
            resp = await backend.send(kind, method, url, params, headers, content, json, until)
            if host.alpn is not None:
                host.alpn.seen(host, backend.version(resp))
            if stream:
                clock.timer.stop()
                body = backend.body(
                    resp, AsyncLease(hs, gs, host.metrics, self._stats), t.idle, deadline_at, host.origin
                )
                held = False  # the body reader owns the slots from here
                return AsyncStreamResponse(
                    backend.status(resp),
                    backend_headers(resp.headers),
                    None,
                    url=url,
                    method=method,
                    origin=host.origin,
                    http_version=backend.version(resp),
                    body=body,
                )
            clock.enter(DEADLINE, None)  # the body is bounded by the deadline alone
            data = await backend.read(resp)
        except BaseException as exc:
            ours = clock.timer.stop()
            if held:
                release_slots(hs, gs, host.metrics, self._stats)  # slots first: the drop may be cancelled
                if resp is not None:
                    await backend.drop(resp)
            failure = clock.failure(exc, ours, backend.classify)
            if failure is None:
                raise
            raise failure from exc
        clock.timer.stop()
        release_slots(hs, gs, host.metrics, self._stats)
        if not backend.closes_itself:
            await backend.drop(resp)
        return received(
            backend.status(resp), resp.headers, data, url, method, host.origin, backend.version(resp)
        )


class _StreamContext(StreamContext):
    """``async with client.stream(...) as response``: closes the response on exit, always."""

    __slots__ = ()

    async def __aenter__(self) -> AsyncStreamResponse:
        self._started = _monotonic()
        response = await self._client._run(self._args)
        assert isinstance(response, AsyncStreamResponse)
        self._response = response
        return response

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        response = self._closing()
        if response is not None:
            await response.aclose()
            self._closed(response)


def install_backend(client: AsyncPerfClient, backend: Any) -> None:
    """Seam for benches and tests: every route of ``client`` runs over ``backend`` (an object with the
    methods ``AiohttpBackend`` has: send, read, status, version, body, drop, classify, closes_itself)
    through the real ``_run``, e.g. an in-process fake that answers at once (bench/bench_http_layer.py
    times the layer's own work that way). Not for production use."""
    client._aiohttp_backend = backend
    client._backend = lambda kind: backend  # type: ignore[method-assign]
