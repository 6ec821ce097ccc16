"""``PyreqwestBackend``: AsyncPerfClient's optional native backend (pyreqwest: Rust reqwest / hyper).

Chosen with ``http.backend: "pyreqwest"`` (the ``native`` extra); aiohttp stays the pure-Python default and
the fallback. It takes the same steps as ``AiohttpBackend`` / ``HttpxBackend`` (``_attempt``): the retry
loop, slots, timers, breaker and metrics are ours; pyreqwest only carries the bytes. What it is set to so
a caller sees what the aiohttp backend gives:

* no redirects followed, no cookies kept, no retries of its own for requests that may have reached the
  server (hyper resends only requests it never wrote, as on a keep-alive connection closed under it);
* no decompression inside reqwest: it would drop ``Content-Encoding`` / ``Content-Length`` from the
  headers. gzip / deflate bodies are inflated here, headers left as the server sent them (as aiohttp does);
* the connection limits are ours (slots): at most ``max_connections`` requests in flight through the
  HTTP/1.1 client, ``max_per_host`` idle connections kept per host, for ``keepalive_expiry`` seconds. The
  HTTP/2 clients get no cap of their own: each origin's ``http2_max_streams`` gate bounds its streams
  (``_lease.host_gates``), which hyper multiplexes over one connection.

Requests are sent streamed (``build_streamed``, no body read ahead), so the wait for the headers and the
body read are two phases under our clock as on aiohttp; a response is a ``Sent`` (the stream request, to
close it, and the response).

A request given up before its headers (our first-byte timer, the deadline, the caller's cancel) can't be
stopped from here: pyreqwest (0.15) runs it as a task of its own runtime and a cancel only drops that task's
JoinHandle, which does not abort it; no API of pyreqwest's aborts it either. The request runs on until the
server answers, holding its HTTP/2 stream (after the server's 100, hyper queues every new one behind them)
or its HTTP/1.1 connection. So each request carries reqwest's own limits, which do abort it (and reset its
stream), set ``MARGIN`` past ours so that our timer always fires first and a caller sees what it saw
before: a total timeout at the call's deadline (``send``'s ``until``) and, on the client, a read timeout
past the first-byte and idle limits (``read_limit``). One difference remains, by choice: a non-streamed
body that stalls longer than that read timeout between two reads fails as a read error (retried if
idempotent), where the aiohttp backend waits out the deadline; without it, a server that never answers
would hold each abandoned stream until the deadline, and 100 of them wedge the connection.

This module imports pyreqwest: it is loaded only when a client opens this backend. Loading it registers
``settle_at_exit`` (atexit), so a process that used pyreqwest exits 0 rather than aborting (see there).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import math
import operator
import re
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import PyreqwestError

from infra.http._async_bodies import earliest
from infra.http._body import Body
from infra.http._classify import classify_pyreqwest
from infra.http._ident import DEFAULT_HEADERS
from infra.http._lease import AsyncLease
from infra.http._origin import origin_of
from infra.http._timer import PhaseTimer

__all__ = ["PyreqwestBackend", "PyreqwestBody", "Sent", "make_client"]

_monotonic = time.monotonic
_current_task = asyncio.current_task
_VERSIONS = {"HTTP/2.0": "HTTP/2", "HTTP/1.0": "HTTP/1.0", "HTTP/1.1": "HTTP/1.1"}
_ENCODED = frozenset({"gzip", "x-gzip", "deflate"})
_BODILESS = frozenset({"GET", "HEAD"})
_RESENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})  # aiohttp's idempotent methods
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s)]+")
#: How long after our own limit reqwest's aborts a request we gave up on (module docstring): our timer
#: fires first, its cancel wins over reqwest's error even on a loop late by more (``cancels``), and the
#: request's stream or connection is freed at most this long after the caller saw our timeout.
MARGIN = 1.0


_TOTALS: dict[int, timedelta] = {}  # quarter seconds -> timedelta, for total_timeout
_GRAIN = 4  # total_timeout's steps a second


def total_timeout(until: float) -> timedelta:
    """reqwest's total timeout for a request whose call ends at ``until`` (monotonic): at least ``MARGIN``
    past it, rounded up to a quarter second so that the timedelta is a memo hit (building one costs ~2.4 µs
    here, more than the rest of the request's builder calls: callgrind put these limits at ~11k
    instructions a request on the event loop's thread). A quarter, not a whole second: how soon a request
    given up is aborted is what frees its stream (tests/http/test_http2_cancel.py)."""
    steps = math.ceil((max(until - _monotonic(), 0.0) + MARGIN) * _GRAIN)
    found = _TOTALS.get(steps)
    if found is None:
        found = timedelta(seconds=steps / _GRAIN)
        if len(_TOTALS) < 4096:  # the deadlines in use, in quarter seconds: a handful
            _TOTALS[steps] = found
    return found


def read_limit(first_byte: float | None, idle: float | None) -> float | None:
    """reqwest's read timeout for a client with these limits: each wait for the headers or for a body's next
    chunk ends ``MARGIN`` after the longer of ours. None (no read timeout) when either is unlimited: a
    stream may then idle, or its headers take, as long as the deadline allows."""
    if first_byte is None or idle is None:
        return None
    return max(first_byte, idle) + MARGIN


_SETTLE_LIMIT = 1.0  # seconds settle_at_exit waits at most (a native thread stuck in Python: exit anyway)


def native_threads_in_python() -> bool:
    """A thread the threading module does not know (pyreqwest's runtime thread) is inside Python code.

    The main thread runs this holding the GIL, so such a thread is waiting for it or has released it. (A
    native thread that once asked ``threading.current_thread()`` is listed there as a dummy and not seen;
    pyreqwest's wakers don't ask.)"""
    known = {t.ident for t in threading.enumerate()}
    return any(ident not in known for ident in sys._current_frames())


def settle_at_exit(limit: float = _SETTLE_LIMIT) -> bool:
    """At exit, before the interpreter finalizes: wait (``limit`` at most) until no native thread is inside
    Python, so that none is left to die mid-call.

    Why: pyreqwest's tokio thread wakes each awaiting coroutine by calling the loop's
    ``call_soon_threadsafe`` inside pyo3's ``Python::attach``; it writes the wake-up byte with the GIL
    released (``_write_to_self`` -> ``sock.send``). That byte resumes the main thread, which may run to
    ``Py_FinalizeEx`` (the last await of the program: a response read, ``aclose``) before the tokio thread
    takes the GIL back. CPython (< 3.14) then ends that thread with ``pthread_exit`` inside
    ``PyEval_RestoreThread``; the unwind runs pyo3's guard, whose ``PyGILState_Release`` aborts the process
    ("PyGILState_Release: thread state ... must be current when releasing", SIGABRT, exit 134): 1 exit in
    10 or so, closed client or not (plain pyreqwest too). Atexit hooks run before the interpreter is marked
    finalizing, so sleeping here (the GIL released) lets that thread finish its call and leave Python.
    True once none is inside Python; False if ``limit`` ran out first."""
    end = _monotonic() + limit
    while native_threads_in_python():
        if _monotonic() >= end:
            return False  # gave up: one is stuck in Python code (not a wake), exit as before
        time.sleep(0.001)
    return True


atexit.register(settle_at_exit)


def _has_length(headers: Any) -> bool:
    return bool(headers) and any(k.lower() == "content-length" for k in headers)


def _dropped(exc: PyreqwestError) -> bool:
    """A kept-alive connection the server closed before answering (what aiohttp resends, unseen, when
    its own retry is on: ``http.enabled: false``)."""
    details = getattr(exc, "details", None)
    causes = details.get("causes") if isinstance(details, dict) else None
    return any(
        isinstance(c, dict) and "connection closed before message completed" in str(c.get("message"))
        for c in causes or ()
    )


if sys.version_info >= (3, 11):

    def cancels() -> int:
        """Cancels requested of the running task and not yet uncancelled (``Task.cancelling``).

        pyreqwest's awaitables (0.15) sometimes drop a cancel that lands as their result does: the await
        returns its value, ``cancelling()`` stays raised, and no CancelledError ever comes (plain
        pyreqwest, h2c: 1 to 57 of 200 streamed readers cancelled after their 3rd chunk read on to the
        300th; 1 of 300 sends cancelled while awaiting the headers returned the response). Asyncio
        delivers a cancel as a CancelledError out of that same await or at the task's next one, so a count
        above the one before a normal return means the cancel was lost: the backend raises it again."""
        task = _current_task()
        return task.cancelling() if task is not None else 0

else:  # pragma: no cover - Python 3.10 has no Task.cancelling: a lost cancel stays lost

    def cancels() -> int:
        return 0


def _origin_only(text: str) -> str:
    return _URL.sub(lambda m: origin_of(m.group(0)), text)


def redacted(exc: PyreqwestError) -> BaseException:
    """``exc`` with every URL in its message and causes cut to its origin. reqwest writes the full URL into
    its errors ("error sending request for url (http://h/path?api_key=...)"); they become the ``__cause__``
    of ours, and a caller's ``log.exception`` would print the query string (aiohttp's and httpx's errors
    name no path). Same type and details otherwise, so classification is unchanged."""
    args = exc.args
    if len(args) != 2 or not isinstance(args[1], dict):
        return exc
    message, details = args
    causes = details.get("causes")
    clean = dict(details)
    if isinstance(causes, list):
        clean["causes"] = [
            {**c, "message": _origin_only(str(c.get("message", "")))} if isinstance(c, dict) else c
            for c in causes
        ]
    try:
        return type(exc)(_origin_only(str(message)), clean)
    except Exception:  # a type that can't be rebuilt this way: keep it (classified as before)
        return exc


class HeaderView:
    """pyreqwest's HeaderMap as ``Headers`` reads a backend's mapping (``get``, ``getall(key, default)``,
    names, pairs), without copying it."""

    __slots__ = ("_map",)

    def __init__(self, header_map: Any) -> None:
        self._map = header_map

    def get(self, key: str, default: Any = None) -> Any:
        return self._map.get(key, default)

    def getall(self, key: str, default: Any = ()) -> list[str]:
        found: list[str] = self._map.getall(key)
        return found if found else list(default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def items(self) -> Any:
        return self._map.items()


class Sent:
    """One response as the client's steps read it: ``status``, ``headers``, ``version``; and the stream
    request it came from (closed by ``drop``)."""

    __slots__ = ("encoding", "headers", "open", "req", "resp", "status", "version")

    def __init__(self, req: Any, resp: Any) -> None:
        self.open = True  # the response holds its connection (body not read to its end, not closed)
        self.req = req
        self.resp = resp
        self.status: int = resp.status
        self.headers = HeaderView(resp.headers)
        self.encoding: str | None = resp.get_header("content-encoding")
        version: str = resp.version
        self.version = _VERSIONS.get(version, version)


class _Deflate:
    """``deflate`` as servers send it: zlib-wrapped (RFC 9110) or, from some, raw; told by the first byte
    (aiohttp's rule)."""

    __slots__ = ("_d",)

    def __init__(self) -> None:
        self._d: Any = None

    def decompress(self, chunk: bytes) -> bytes:
        if self._d is None:
            if not chunk:
                return b""
            raw = (chunk[0] & 0x0F) != 8
            self._d = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        out: bytes = self._d.decompress(chunk)
        return out

    def flush(self) -> bytes:
        return b"" if self._d is None else bytes(self._d.flush())


def inflater(encoding: str | None) -> Any:
    """A decompressor for a gzip / deflate body (aiohttp inflates both); None for any other body."""
    if encoding is None:
        return None
    encoding = encoding.strip().lower()
    if encoding not in _ENCODED:
        return None
    if encoding == "deflate":
        return _Deflate()
    return zlib.decompressobj(zlib.MAX_WBITS | 16)


def make_client(
    kind: str,
    *,
    max_connections: int,
    max_per_host: int,
    keepalive: float,
    connect: float | None,
    verify: bool | str,
    read: float | None = None,
) -> Client:
    """A pyreqwest client for ``kind``: "rq-h1" (HTTP/1.1), "rq-h2c" (HTTP/2 prior knowledge, cleartext) or
    "rq-h2" (HTTP/2 offered by ALPN over TLS, HTTP/1.1 when the server declines); ``read``: reqwest's read
    timeout (``read_limit``), which aborts a request we gave up on before its headers came."""
    builder = (
        ClientBuilder()
        .follow_redirects(False)
        .gzip(False)
        .deflate(False)
        .brotli(False)
        .zstd(False)
        .referer(False)
        .default_cookie_store(False)
        .no_proxy()
        .default_headers(DEFAULT_HEADERS)
        .pool_max_idle_per_host(max_per_host)
        .pool_idle_timeout(timedelta(seconds=keepalive))
    )
    if connect is not None:
        builder = builder.connect_timeout(timedelta(seconds=connect))
    if read is not None:
        builder = builder.read_timeout(timedelta(seconds=read))
    if kind == "rq-h2c":
        builder = builder.http2_prior_knowledge()
    elif kind == "rq-h2":
        builder = builder.http2(True)
    else:
        builder = builder.http1_only().max_connections(max_connections)
    if verify is False:
        builder = builder.danger_accept_invalid_certs(True)
    elif isinstance(verify, str):
        with open(verify, "rb") as f:
            builder = builder.add_root_certificate_pem(f.read())
    client: Client = builder.build()
    return client


class PyreqwestBackend:
    """HTTP/1.1 and HTTP/2 over pyreqwest clients, one per kind (opened on first use)."""

    __slots__ = ("active", "client_for", "clients", "resend")

    classify = staticmethod(classify_pyreqwest)
    closes_itself = True  # read() ends the body (the connection goes back to reqwest's pool) or drops it

    def __init__(self, clients: dict[str, Client], client_for: Any, resend: bool = False) -> None:
        self.clients = clients  # kind -> client, filled by client_for(kind) on first use
        self.resend = resend  # enabled: false: resend an idempotent request once on a dropped connection
        self.client_for = client_for
        # requests holding a connection (or an HTTP/2 stream), from their send to the end of their body or
        # their drop, the wait for the headers included: pool_stats()["reqwest_active"]
        self.active = 0

    async def send(
        self,
        kind: str,
        method: str,
        url: str,
        params: Any,
        headers: Any,
        content: Any,
        json: Any,
        until: float | None = None,
    ) -> Sent:
        """Send, and return at the headers. ``until``: when the call's deadline ends the body's read too
        (None: a stream left to its idle limit), so reqwest aborts the request ``MARGIN`` after it."""
        req = self._request(kind, method, url, params, headers, content, json, until)
        before = cancels()
        self.active += 1
        try:
            sent = Sent(req, await req.__aenter__())
        except BaseException as exc:
            self.active -= 1
            if not isinstance(exc, PyreqwestError):
                raise
            if cancels() > before:  # a cancel lost to reqwest's error (``cancels``, ``MARGIN``)
                raise asyncio.CancelledError from None
            if not (self.resend and method in _RESENT and _dropped(exc)):
                raise redacted(exc) from None
            # enabled: false only: what a plain aiohttp session does on a kept-alive connection the server
            # closed (the layer's retries are off there, so no second resend on top of it)
            req = self._request(kind, method, url, params, headers, content, json, until)
            self.active += 1
            try:
                sent = Sent(req, await req.__aenter__())
            except BaseException as again:
                self.active -= 1
                if isinstance(again, PyreqwestError):
                    raise redacted(again) from None
                raise
        if cancels() > before:  # the caller was cancelled (pyreqwest lost it): the response is not theirs
            await self.drop(sent)
            raise asyncio.CancelledError
        return sent

    def _request(
        self,
        kind: str,
        method: str,
        url: str,
        params: Any,
        headers: Any,
        content: Any,
        json: Any,
        until: float | None,
    ) -> Any:
        builder = (self.clients.get(kind) or self.client_for(kind)).request(method, url)
        if until is not None:  # reqwest's total timeout, MARGIN past our deadline (module docstring)
            builder = builder.timeout(total_timeout(until))
        if params:
            builder = builder.query({k: str(v) for k, v in params.items()})
        if headers:
            builder = builder.headers(headers)
        if content is not None:
            # the call's prepared body (_body.request_body): bytes as they are, else this try's chunks
            if content.__class__ is bytes:
                builder = builder.body_bytes(content)
                if not content and method not in _BODILESS and not _has_length(headers):
                    builder = builder.header("content-length", "0")  # hyper omits it for b"", aiohttp not
            else:
                builder = builder.body_stream(content.async_chunks())
        elif json is not None:  # bodies come prepared (json encoded by request_body): kept for direct use
            builder = builder.body_json(json)
        # buffer limit 0: __aenter__ returns at the headers (by default it first reads up to 64 KiB of body,
        # which would put the body under the first-byte timer and hold a stream's first chunk back)
        return builder.streamed_read_buffer_limit(0).build_streamed()

    status = operator.attrgetter("status")
    version = operator.attrgetter("version")

    async def read(self, sent: Sent) -> bytes:
        before = cancels()
        try:
            data: bytes = (await sent.resp.bytes()).to_bytes()
        except BaseException as exc:
            await self.drop(sent)
            if isinstance(exc, PyreqwestError):
                if cancels() > before:  # a cancel lost to reqwest's error (``cancels``)
                    raise asyncio.CancelledError from None
                raise redacted(exc) from None
            raise
        sent.open = False  # read to its end: the connection is back in reqwest's pool
        self.active -= 1
        if cancels() > before:  # a cancel pyreqwest lost (``cancels``)
            raise asyncio.CancelledError
        if sent.encoding is not None and (d := inflater(sent.encoding)) is not None:
            data = d.decompress(data) + d.flush()
        return data

    def body(
        self, sent: Sent, lease: AsyncLease, idle: float | None, deadline_at: float | None, origin: str
    ) -> PyreqwestBody:
        return PyreqwestBody(sent, lease, idle, deadline_at, origin, self)

    async def drop(self, sent: Sent) -> None:
        """Close the response (its connection is closed unless the body was read to its end)."""
        if sent.open:
            sent.open = False
            self.active -= 1
        with contextlib.suppress(BaseException):
            await asyncio.shield(sent.req.__aexit__(None, None, None))


class PyreqwestBody(Body):
    """Body reader for a pyreqwest streamed response (chunks as they arrive, inflated if encoded)."""

    __slots__ = ("_backend", "_inflate", "_reader")

    def __init__(
        self,
        resp: Sent,
        lease: AsyncLease,
        idle: float | None,
        deadline_at: float | None,
        origin: str,
        backend: PyreqwestBackend,
    ) -> None:
        super().__init__(resp, lease, idle, deadline_at, origin)
        self._backend = backend
        self._reader = resp.resp.body_reader
        self._inflate = inflater(resp.encoding)

    async def next_chunk(self) -> bytes:
        while not self.done:
            when = earliest(self.deadline_at, _monotonic() + self._idle if self._idle is not None else None)
            before = cancels()
            try:
                async with PhaseTimer(when):
                    try:
                        got = await self._reader.read_chunk()
                    except PyreqwestError:
                        if cancels() > before:  # our timer's cancel, lost to reqwest's error (``MARGIN``)
                            raise asyncio.CancelledError from None
                        raise
                    if cancels() > before:  # a cancel pyreqwest lost (``cancels``), raised again under
                        raise asyncio.CancelledError  # the timer: the timer's own is then a timeout
            except TimeoutError as exc:
                await self.aclose()
                raise self.ran_out(self.deadline_at is not None and when == self.deadline_at) from exc
            except Exception as exc:
                await self.aclose()
                cause = redacted(exc) if isinstance(exc, PyreqwestError) else exc
                raise self.broke(cause) from cause
            if got is None:
                self.done = True
                tail = b"" if self._inflate is None else bytes(self._inflate.flush())
                await self.aclose()
                return tail
            chunk: bytes = got.to_bytes()
            if self._inflate is not None:
                chunk = self._inflate.decompress(chunk)
            if chunk:
                return chunk
        return b""

    async def aclose(self) -> None:
        if not self._lease.released:
            self._lease.release()  # slot first: the close below may be cancelled
            await self._backend.drop(self._resp)
