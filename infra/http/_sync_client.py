"""PerfClient: the sync twin of AsyncPerfClient, for threaded workers, on httpx's sync client.

Why httpx here: threaded workers run a handful of calls at once, where httpx's O(N²) pool scan
(encode/httpx#3215, the reason the async hot path rides on aiohttp) costs nothing measurable; it speaks
HTTP/2 through h2; and it lets each request carry its own connect / read / pool timeouts, which the one
deadline per call needs. urllib3 was the alternative: per-host pools but no global limit and no HTTP/2.
httpx has no per-host limit either, so the slots (``_lease``) are ours, the same as the async client's.
The retry rules, budget and breaker are the shared I/O-free core (``_core.Call``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

# Imported here, not on first request: an import inside a call would eat that call's deadline. This
# module itself loads only when PerfClient is first used (infra.http's lazy __getattr__).
import httpx

from infra.http._classify import FATAL, classify_httpx
from infra.http._core import DEADLINE, FIRST_BYTE, POOL, READ, Call, HostState
from infra.http._errors import DeadlineExceeded, HTTPError, TransportError
from infra.http._ident import DEFAULT_HEADERS, prepare_headers
from infra.http._lease import SyncGate, SyncLease, acquire_sync
from infra.http._origin import origin_of
from infra.http._policy import HTTPSettings
from infra.http._response import Response, StreamResponse, backend_headers
from infra.http._settings_args import DEFAULT, backend_for, resolve_settings, tls_context

__all__ = ["PerfClient"]

_monotonic = time.monotonic
# A read timeout this close to the deadline is the deadline's doing, not the first-byte limit's.
_DEADLINE_SLACK = 0.002


class _Failure(Exception):
    def __init__(self, kind: str, cause: BaseException) -> None:
        self.kind = kind
        self.cause = cause


class _Stats:
    __slots__ = ("in_use", "lock")

    def __init__(self) -> None:
        self.in_use = 0
        self.lock = threading.Lock()


def _left(deadline_at: float | None, cap: float | None) -> float | None:
    if deadline_at is None:
        return cap
    left = max(0.0, deadline_at - _monotonic())
    return left if cap is None or left < cap else cap


class _SyncBody:
    """Reads an httpx response body chunk by chunk; the read timeout becomes the idle timeout."""

    __slots__ = ("_first", "_idle", "_iter", "_lease", "_resp", "deadline_at", "done", "origin")

    def __init__(
        self, resp: Any, lease: SyncLease, idle: float | None, deadline_at: float | None, origin: str
    ) -> None:
        self._resp = resp
        self._lease = lease
        self._idle = idle
        self.deadline_at = deadline_at
        self.done = False
        self.origin = origin
        self._first = True
        self._iter: Iterator[bytes] = resp.iter_bytes()

    def next_chunk(self) -> bytes:
        if self.done:
            return b""
        if self._first:
            # httpcore takes the read timeout from request.extensions when the body starts (at the first
            # read), so switching it here from the first-byte limit to the idle limit gives streams their
            # own inter-chunk timeout. Later changes wouldn't be seen: the deadline is checked per chunk.
            self._first = False
            timeouts = self._resp.request.extensions.get("timeout")
            if isinstance(timeouts, dict):
                timeouts["read"] = _left(self.deadline_at, self._idle)
        try:
            chunk = next(self._iter, b"")
        except Exception as exc:
            self.close()
            if isinstance(exc, httpx.ReadTimeout):
                if self.deadline_at is not None and _monotonic() >= self.deadline_at - _DEADLINE_SLACK:
                    raise DeadlineExceeded(
                        "deadline exceeded while streaming the body", origin=self.origin
                    ) from exc
                raise TransportError(
                    f"no body data for {self._idle}s (idle timeout)", kind="idle", origin=self.origin
                ) from exc
            raise TransportError(
                f"stream broke: {type(exc).__name__}", kind=READ, origin=self.origin
            ) from exc
        if not chunk:
            self.done = True
            self.close()
        elif self.deadline_at is not None and _monotonic() > self.deadline_at:
            self.close()
            raise DeadlineExceeded("deadline exceeded while streaming the body", origin=self.origin)
        return chunk

    def close(self) -> None:
        if not self._lease.released:
            try:
                self._resp.close()
            finally:
                self._lease.release()


class PerfClient:
    """Pooled, retrying sync HTTP client; thread-safe. Use as ``with PerfClient() as client:``.

    Same behaviour as AsyncPerfClient (one deadline per call, retries, budget, breaker, metrics); the
    deadline is enforced through each request's connect / read / pool timeouts, since a blocking call
    can't be cancelled from outside.
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
        self._hosts_lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._global = SyncGate(self._settings.limits.max_connections)
        self._stats = _Stats()
        self._closed = False
        # An infra.cache.Cache to use instead of get_cache() (tests, embedding apps).
        self._cache: Any = cache_store
        # TLS for https origins: True verifies against the system CA roots, a path to a CA bundle trusts
        # that (private) CA, False turns verification off. Each transport gets its own SSLContext
        # (tls_context): httpx sets ALPN h2 on the context it is given, which would make aiohttp offer h2.
        self._verify = verify
        # Built now: an httpx transport loads TLS roots (~100 ms); the first call's deadline mustn't pay.
        self._client("h2" if self._settings.http2 else "h1")

    @classmethod
    def from_config(cls, section: Any = None, **overrides: Any) -> PerfClient:
        """Build from the ``http`` section of perf_config (the process-wide config when omitted)."""
        from infra.http._settings_args import settings_from_config

        return cls(settings_from_config(section), **overrides)

    @property
    def settings(self) -> HTTPSettings:
        return self._settings

    def __enter__(self) -> PerfClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

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
        active = 0
        for client in list(self._clients.values()):
            pool = getattr(client, "_pool", None)
            for conn in list(getattr(pool, "connections", ()) or ()):
                try:
                    if not conn.is_idle() and not conn.is_closed():
                        active += 1
                except Exception:
                    pass
        return {"in_use": self._stats.in_use, "httpx_active": active}

    def breaker_state(self, url: str) -> str:
        host = self._hosts.get(origin_of(url))
        return host.breaker.state if host is not None else "closed"

    def host_state(self, url: str) -> HostState:
        return self._host(origin_of(url))

    def _host(self, origin: str) -> HostState:
        host = self._hosts.get(origin)
        if host is None:
            with self._hosts_lock:
                host = self._hosts.get(origin)
                if host is None:
                    host = self._hosts[origin] = HostState(
                        origin, self._settings, SyncGate(self._settings.limits.max_per_host)
                    )
        return host

    def _client(self, kind: str) -> Any:
        client = self._clients.get(kind)
        if client is None:
            if self._closed:
                raise RuntimeError("PerfClient is closed")
            s = self._settings
            with self._clients_lock:
                client = self._clients.get(kind)
                if client is None:
                    # The transport, not httpx.Client: Client.send logs every full URL at INFO ("HTTP
                    # Request: GET https://...?api_key=..."), which would put query-string secrets in logs.
                    client = self._clients[kind] = httpx.HTTPTransport(
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

    def request(
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
        """Send one logical request (with retries); return the fully read response (see AsyncPerfClient)."""
        method = method.upper()
        headers, retry_ok = prepare_headers(headers, idempotent)
        if cache or (cache is None and self._settings.cache.enabled):
            from infra.http._caching import sync_cached_request

            return sync_cached_request(
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
        response: Response = self._run(method, url, params, headers, content, json, retry_ok, deadline, False)
        return response

    def get(self, url: str, **kw: Any) -> Response:
        return self.request("GET", url, **kw)

    def head(self, url: str, **kw: Any) -> Response:
        return self.request("HEAD", url, **kw)

    def options(self, url: str, **kw: Any) -> Response:
        return self.request("OPTIONS", url, **kw)

    def post(self, url: str, **kw: Any) -> Response:
        return self.request("POST", url, **kw)

    def put(self, url: str, **kw: Any) -> Response:
        return self.request("PUT", url, **kw)

    def patch(self, url: str, **kw: Any) -> Response:
        return self.request("PATCH", url, **kw)

    def delete(self, url: str, **kw: Any) -> Response:
        return self.request("DELETE", url, **kw)

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
        """``with client.stream("GET", url) as resp: for line in resp.iter_lines(): ...``"""
        method = method.upper()
        headers, retry_ok = prepare_headers(headers, idempotent)
        return _StreamContext(self, (method, url, params, headers, content, json, retry_ok, deadline, True))

    # -- the loop ----------------------------------------------------------------------------------------

    def _run(
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
    ) -> Any:
        s = self._settings
        origin = origin_of(url)
        host = self._hosts.get(origin) or self._host(origin)
        started = _monotonic()
        total = s.timeouts.total if deadline is DEFAULT else deadline
        deadline_at = started + total if total is not None else None
        call = Call(s.retry, host, method, retry_ok, started)
        kind = backend_for(s, url, origin)
        if kind == "aiohttp":  # the sync client's HTTP/1.1 backend is httpx
            kind = "h1"
        delay: float | None
        while True:
            admission = call.admit()
            t0 = _monotonic()
            answered = None  # the response to hand back if the breaker stops the retry
            try:
                response = self._once(
                    kind, host, method, url, params, headers, content, json, deadline_at, stream
                )
            except _Failure as failure:
                now = _monotonic()
                try:
                    delay = call.after_error(
                        failure.kind, failure.cause, now - t0, now, deadline_at, admission
                    )
                except HTTPError:
                    host.metrics.duration(method, None, now - started)
                    raise
            except BaseException:
                call.release()
                raise
            else:
                now = _monotonic()
                try:
                    delay = call.after_response(response, now - t0, now, deadline_at, admission)
                except HTTPError:
                    if stream:
                        response.close()
                    host.metrics.duration(method, response.status, now - started)
                    raise
                if delay is None:
                    if call.history:
                        response.history = tuple(call.history)
                    if stream:
                        # The configured total deadline bounds a stream up to its headers; its body then
                        # runs on the idle timeout (LLM / TTS streams outlive any sensible total). An
                        # explicit deadline= bounds the whole stream.
                        if deadline is DEFAULT:
                            response._body.deadline_at = None
                        host.metrics.ttfb(method, now - started)
                    else:
                        host.metrics.duration(method, response.status, now - started)
                    return response
                if stream:
                    response.close()
                else:
                    answered = response
            if delay:
                time.sleep(delay)
            try:
                last = call.after_sleep(answered)
            except HTTPError:
                status = answered.status if answered is not None else None
                host.metrics.duration(method, status, _monotonic() - started)
                raise
            if last is not None:  # the breaker opened meanwhile: this response is the call's answer
                host.metrics.duration(method, last.status, _monotonic() - started)
                return last

    def _once(
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
    ) -> Any:
        client = self._client(kind)
        t = self._settings.timeouts
        pool_wait = _left(deadline_at, t.pool)
        lease = acquire_sync(host.slots, self._global, host.metrics, self._stats, pool_wait)
        if lease is None:
            expired = deadline_at is not None and _monotonic() >= deadline_at - _DEADLINE_SLACK
            raise _Failure(DEADLINE if expired else POOL, TimeoutError("no connection slot in time"))
        resp: Any = None
        handed_over = False
        try:
            first_byte = _left(deadline_at, t.first_byte)
            timeout = httpx.Timeout(
                connect=_left(deadline_at, t.connect), read=first_byte, write=first_byte, pool=None
            )
            merged = httpx.Headers(DEFAULT_HEADERS)
            if headers:
                merged.update(headers)  # case-insensitive: the caller's value replaces ours
            request = httpx.Request(
                method,
                url,
                params=params,
                headers=merged,
                content=content,
                json=json,
                extensions={"timeout": timeout.as_dict()},
            )
            try:
                resp = client.handle_request(request)
                resp.request = request
                if stream:
                    handed_over = True
                    return StreamResponse(
                        resp.status_code,
                        backend_headers(resp.headers),
                        None,
                        url=url,
                        method=method,
                        origin=host.origin,
                        http_version=resp.http_version,
                        body=_SyncBody(resp, lease, t.idle, deadline_at, host.origin),
                    )
                chunks = []
                for chunk in resp.iter_bytes():
                    chunks.append(chunk)
                    if deadline_at is not None and _monotonic() > deadline_at:
                        raise _Failure(DEADLINE, TimeoutError("deadline passed while reading the body"))
                data = b"".join(chunks)
            except httpx.TimeoutException as exc:
                if deadline_at is not None and _monotonic() >= deadline_at - _DEADLINE_SLACK:
                    raise _Failure(DEADLINE, exc) from exc
                found = classify_httpx(exc) or FATAL
                raise _Failure(FIRST_BYTE if isinstance(exc, httpx.ReadTimeout) else found, exc) from exc
            except _Failure:
                raise
            except Exception as exc:
                failed_kind = classify_httpx(exc)
                if failed_kind is None:
                    raise
                raise _Failure(failed_kind, exc) from exc
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
                    if resp is not None:
                        resp.close()
                finally:
                    lease.release()


class _StreamContext:
    """``with client.stream(...) as response``: closes the response on exit, always."""

    __slots__ = ("_args", "_client", "_response", "_started")

    def __init__(self, client: PerfClient, args: tuple[Any, ...]) -> None:
        self._client = client
        self._args = args
        self._response: StreamResponse | None = None
        self._started = 0.0

    def __enter__(self) -> StreamResponse:
        self._started = _monotonic()
        response: StreamResponse = self._client._run(*self._args)
        self._response = response
        return response

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        response, self._response = self._response, None
        if response is not None:
            response.close()
            host = self._client._hosts.get(response.origin)
            if host is not None:
                host.metrics.duration(response.method, response.status, _monotonic() - self._started)
