"""PerfClient: the sync twin of AsyncPerfClient, for threaded workers, on httpx's sync client.

Why httpx here: threaded workers run a handful of calls at once, where httpx's O(N²) pool scan
(encode/httpx#3215, the reason the async hot path rides on aiohttp) costs nothing measurable; it speaks
HTTP/2 through h2; and it lets each request carry its own connect / read / pool timeouts, which the one
deadline per call needs. urllib3 was the alternative: per-host pools but no global limit and no HTTP/2.
httpx has no per-host limit either, so the slots (``_lease``) are ours, the same as the async client's.
The retry rules, budget and breaker are the shared I/O-free core (``_core.Call``), and the loop is
``_core.steps``, whose effects ``_run`` performs plainly (AsyncPerfClient's twin awaits them).
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from infra._closing import Closing

# Imported here, not on first request: an import inside a call would eat that call's deadline. This
# module itself loads only when PerfClient is first used (infra.http's lazy __getattr__).
from infra.http._affinity import Affinity
from infra.http._body import sync_chunks_for
from infra.http._caching import sync_cached_request
from infra.http._client_base import ClientBase, StreamContext
from infra.http._core import DEADLINE, POOL, Failure, HostState, steps
from infra.http._lease import SyncGate, acquire_sync, host_gates
from infra.http._origin import origin_of
from infra.http._response import Response, StreamResponse, backend_headers
from infra.http._routing import (
    DEFAULT,
    CallArgs,
    RequestOptions,
    StreamOptions,
    active_connections,
    backend_for,
    call_args,
    close_reset,
    h2_connections,
    httpx_request,
    httpx_transport,
    reset_orphans,
    transport_pool,
)
from infra.http._sync_bodies import DEADLINE_SLACK, Held, SyncBody, failure_of, left, timeouts

if TYPE_CHECKING:
    from typing_extensions import Unpack


__all__ = ["PerfClient"]

_monotonic = time.monotonic


class _Stats:
    __slots__ = ("in_use", "lock")

    def __init__(self) -> None:
        self.in_use = 0
        self.lock = threading.Lock()


class PerfClient(ClientBase, Closing):
    """Pooled, retrying sync HTTP client; thread-safe. Use as ``with PerfClient() as client:``.

    Same settings and behaviour as AsyncPerfClient (one deadline per call, retries, budget, breaker,
    metrics); the deadline is enforced through each request's connect / read / pool timeouts, since a
    blocking call can't be cancelled from outside.
    """

    def _open(self) -> None:
        self._hosts_lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._affinity: dict[str, Affinity] = {}  # per transport: see _affinity
        self._clients_lock = threading.Lock()
        self._global = SyncGate(self._settings.max_connections)
        self._stats = _Stats()
        # Built now: an httpx transport loads TLS roots (~100 ms); the first call's deadline mustn't pay.
        self._client("h2" if self._settings.http2 else "h1")

    def close(self) -> None:
        """Close every connection. Idempotent."""
        self._closed = True
        with self._clients_lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()

    def pool_stats(self) -> dict[str, int]:
        """Connections in use: ``in_use`` (our slots held) and ``httpx_active`` (connections httpx has
        handed out and not yet got back)."""
        return {"in_use": self._stats.in_use, "httpx_active": active_connections(self._clients.values())}

    def _host(self, origin: str) -> HostState:
        host = self._hosts.get(origin)
        if host is None:
            with self._hosts_lock:
                host = self._hosts.get(origin)
                if host is None:
                    slots, shared, _ = host_gates(
                        self._settings, origin, SyncGate, self._global, carrier="httpx-sync"
                    )
                    host = self._hosts[origin] = HostState(origin, self._settings, slots, shared)
        return host

    def _client(self, kind: str) -> Any:
        client = self._clients.get(kind)
        if client is None:
            if self._closed:
                raise RuntimeError("PerfClient is closed")
            with self._clients_lock:
                client = self._clients.get(kind)
                if client is None:
                    client = self._clients[kind] = httpx_transport(
                        self._settings, kind, self._verify, sync=True
                    )
                    self._affinity[kind] = Affinity(transport_pool(client), self._settings.max_connections)
        return client

    # -- public calls ------------------------------------------------------------------------------------

    def request(self, method: str, url: str, **options: Unpack[RequestOptions]) -> Response:
        """Send one logical request (with retries); return the fully read response (see AsyncPerfClient)."""
        return self._request(method.upper(), url, options)

    def _request(self, method: str, url: str, options: RequestOptions) -> Response:
        args, cache = call_args(method, url, False, **options)
        if cache or (cache is None and self._settings.cache.enabled):
            return sync_cached_request(self._cache_store, self._settings.cache, args, cache, self._run)
        return self._run(args)

    def get(self, url: str, **options: Unpack[RequestOptions]) -> Response:
        """``request("GET", url, ...)``."""
        return self._request("GET", url, options)

    def head(self, url: str, **options: Unpack[RequestOptions]) -> Response:
        """``request("HEAD", url, ...)``."""
        return self._request("HEAD", url, options)

    def options(self, url: str, **options: Unpack[RequestOptions]) -> Response:
        """``request("OPTIONS", url, ...)``."""
        return self._request("OPTIONS", url, options)

    def post(self, url: str, **options: Unpack[RequestOptions]) -> Response:
        """``request("POST", url, ...)``."""
        return self._request("POST", url, options)

    def put(self, url: str, **options: Unpack[RequestOptions]) -> Response:
        """``request("PUT", url, ...)``."""
        return self._request("PUT", url, options)

    def patch(self, url: str, **options: Unpack[RequestOptions]) -> Response:
        """``request("PATCH", url, ...)``."""
        return self._request("PATCH", url, options)

    def delete(self, url: str, **options: Unpack[RequestOptions]) -> Response:
        """``request("DELETE", url, ...)``."""
        return self._request("DELETE", url, options)

    def stream(self, method: str, url: str, **options: Unpack[StreamOptions]) -> _StreamContext:
        """``with client.stream("GET", url) as resp: for line in resp.iter_lines(): ...``"""
        return _StreamContext(self, call_args(method.upper(), url, True, **options)[0])

    def _run(self, args: CallArgs) -> Response:
        """One logical call: ``steps`` performed plainly, AsyncPerfClient._run_reference without ``await``
        (every decision is ``Call``'s)."""
        origin = origin_of(args.url)
        host = self._hosts.get(origin) or self._host(origin)
        call, deadline_at = self._begin(args, host)
        kind = backend_for(self._settings, args.url, origin)
        if kind == "aiohttp":  # the sync client's HTTP/1.1 backend is httpx
            kind = "h1"
        flow = steps(call, deadline_at, args.stream, args.deadline is DEFAULT)
        effect = flow.send(None)  # the breaker's admission, then the first attempt
        while True:
            outcome: Any = None
            if effect is None:
                try:
                    outcome = self._once(kind, host, args, deadline_at)
                except Failure as failure:
                    outcome = failure
                except BaseException:
                    call.release()
                    raise
            elif effect.__class__ is float:
                try:
                    time.sleep(effect)
                except BaseException:  # KeyboardInterrupt in the backoff: counted, its retry's token back
                    call.release()
                    raise
            else:
                effect.close()
            try:
                effect = flow.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def _once(self, kind: str, host: HostState, args: CallArgs, deadline_at: float | None) -> Response:
        """One attempt over httpx: slots, this origin's turn on the pool, request, then the body read (or
        handed to a stream); a failure it can name raised as ``Failure``."""
        method, url, params, headers, content, json, _, _, stream = args
        client = self._client(kind)
        t = self._settings.timeout
        pool_wait = left(deadline_at, t.pool)
        t0 = _monotonic()
        slots = acquire_sync(host.slots, host.shared, host.metrics, self._stats, pool_wait)
        if slots is None:
            expired = deadline_at is not None and _monotonic() >= deadline_at - DEADLINE_SLACK
            raise Failure(DEADLINE if expired else POOL, TimeoutError("no connection slot in time"))
        lease = Held(slots, self._affinity[kind])
        resp: Any = None
        handed_over = False
        try:
            timeout = timeouts(deadline_at, t)
            body = sync_chunks_for(content)  # the call's prepared body, for this try (rewound or refused)
            request = httpx_request(httpx, method, url, params, headers, body, json, timeout)
            # The pool timeout covers the slot wait and the wait for this origin's connection together.
            lease.wait_turn(
                request.url, None if pool_wait is None else max(0.0, pool_wait - (_monotonic() - t0))
            )
            try:
                try:
                    resp = client.handle_request(request)
                except BaseException:
                    # Timed out (or failed) before the response headers: httpcore let go of the HTTP/2
                    # stream without a reset (_routing._reset_orphans); its pool's HTTP/2 connections are
                    # looked over, as httpcore doesn't say which one the stream was on.
                    if kind != "h1":
                        reset_orphans(h2_connections(client), request)
                    raise
                resp.request = request
                if stream:
                    handed_over = True
                    lease.streaming()
                    return StreamResponse(
                        resp.status_code,
                        backend_headers(resp.headers),
                        None,
                        url=url,
                        method=method,
                        origin=host.origin,
                        http_version=resp.http_version,
                        body=SyncBody(resp, lease, t.idle, deadline_at, host.origin),
                    )
                chunks = []
                for chunk in resp.iter_bytes():
                    chunks.append(chunk)
                    if deadline_at is not None and _monotonic() > deadline_at:
                        raise Failure(DEADLINE, TimeoutError("deadline passed while reading the body"))
                data = b"".join(chunks)
            except Failure:
                raise
            except Exception as exc:
                failure = failure_of(exc, deadline_at)
                if failure is None:
                    raise
                raise failure from exc
            return Response(
                resp.status_code,
                backend_headers(resp.headers),
                data,
                url=url,
                method=method,
                origin=host.origin,
                http_version=resp.http_version,
            )
        finally:
            if not handed_over:
                try:
                    # not closed: its body not read to its end (a timeout or the deadline during it)
                    if resp is not None and not resp.is_closed:
                        close_reset(resp)
                finally:
                    lease.release()


class _StreamContext(StreamContext):
    """``with client.stream(...) as response``: closes the response on exit, always."""

    __slots__ = ()

    def __enter__(self) -> StreamResponse:
        self._started = _monotonic()
        response = self._client._run(self._args)
        assert isinstance(response, StreamResponse)
        self._response = response
        return response

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        response = self._closing()
        if response is not None:
            response.close()
            self._closed(response)
