"""Map backend exceptions (aiohttp, httpx, pyreqwest) to the error kinds the retry core decides on."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

from infra.http._core import CLOSED, CONNECT, GOAWAY, POOL, READ

__all__ = ["FATAL", "classify_aiohttp", "classify_httpx", "classify_pyreqwest"]

FATAL = "fatal"  # a failure no retry can fix (bad URL, TLS verification): never retried


def classify_aiohttp(exc: BaseException) -> str | None:
    """The error kind of an aiohttp failure; None for anything that isn't a transport failure (a caller's
    bad argument, a bug), which the clients let through unchanged."""
    import aiohttp

    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
        return FATAL
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        return CONNECT
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError, aiohttp.TooManyRedirects)):
        return FATAL
    if isinstance(exc, (aiohttp.ClientError, OSError, asyncio.IncompleteReadError)):
        return READ
    return None


def classify_httpx(exc: BaseException) -> str | None:
    """The error kind of an httpx / httpcore failure; None for anything else (see classify_aiohttp)."""
    import httpx

    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return FATAL if _cert_failure(exc) else CONNECT
    if isinstance(exc, httpx.PoolTimeout):
        return POOL
    if isinstance(exc, httpx.LocalProtocolError) or _h2_error(exc):
        # h2 refused to open a stream on a connection already closed (SEND_HEADERS): nothing reached the
        # server. h2 refused anything else on a closed connection (the rest of a request, SEND_DATA; an
        # answer arriving behind the server's GOAWAY, RECV_HEADERS / RECV_DATA, as nginx sends them at
        # keepalive_requests), or the rest of a request on a stream the server closed (it answered or
        # reset before reading the whole body, as nginx's ``return 200`` does): the request reached the
        # server and may have run, so idempotent-only retry, and the server is healthy: neutral for the
        # breaker (as FATAL it counted as a failure, and 500 such POSTs ended 379 in CircuitOpenError; as
        # CONNECT a plain POST was resent: nginx rotating every 10 streams ran ~50 of 1,000 POSTs twice).
        # h2 raises some of these past httpcore unwrapped (an ``h2.exceptions.ProtocolError``): the same
        # rules, so the caller gets a TransportError. Any other local protocol error is the request's own
        # fault (a header h11 / h2 refuse): no retry fixes it.
        closed = _h2_closed(exc)
        if closed == "SEND_HEADERS":
            return CONNECT
        return CLOSED if closed or _h2_stream_closed(exc) else FATAL
    if isinstance(exc, httpx.RemoteProtocolError):
        last_stream_id = _goaway_last_stream_id(exc)
        if last_stream_id == 0:
            return GOAWAY
        if last_stream_id is not None:
            return CLOSED
    if isinstance(exc, httpx.WriteError):
        # Typically the server closed the connection right after a GOAWAY we had not read yet. httpcore
        # writes for every stream of a connection from whichever stream is reading, so a stream whose
        # request was sent, and ran, can see this error too: not safe to resend a POST.
        return CLOSED
    if isinstance(exc, (httpx.TransportError, OSError)):
        return READ
    if isinstance(exc, httpx.HTTPError):
        return FATAL
    return None


def classify_pyreqwest(exc: BaseException) -> str | None:
    """The error kind of a pyreqwest failure, decided as for aiohttp; None for anything else.

    reqwest names a reset before the response a ``ConnectError`` too ("client error (SendRequest)"): only
    a failure while connecting ("client error (Connect)", or the connect timeout) proves the request never
    reached the server; the rest may have been processed, so they are read failures (idempotent-only
    retry), as aiohttp's ServerDisconnectedError is.
    """
    from pyreqwest import exceptions as e

    if isinstance(exc, e.ConnectTimeoutError):
        return CONNECT
    if isinstance(exc, e.ConnectError):
        causes = _causes(exc)
        if "certificate" in causes or "tls handshake" in causes or "invalidcertificate" in causes:
            return FATAL
        if "client error (connect)" in causes:
            return CONNECT
        return _h2_kind(causes) or READ
    if isinstance(exc, e.PoolTimeoutError):
        return POOL
    if isinstance(exc, (e.BuilderError, e.RedirectError)):
        return FATAL
    if isinstance(exc, (e.ClientClosedError, e.RequestPanicError, e.StatusError)):
        return None  # a closed client, a bug, a status error we never ask for: let them through
    if isinstance(exc, (e.RequestError, OSError)):
        # ReadError, WriteError, a body cut short (a BodyDecodeError, or a plain RequestError "request or
        # response body error" when read whole): what aiohttp names ClientPayloadError / ClientOSError
        return _h2_kind(_causes(exc)) or READ
    return None


def _causes(exc: BaseException) -> str:
    """The messages of a pyreqwest error's causes (its ``details``), lower-cased, in one string."""
    details = getattr(exc, "details", None)
    causes = details.get("causes") if isinstance(details, dict) else None
    parts = [str(exc)]
    for cause in causes or ():
        parts.append(str(cause.get("message", "")) if isinstance(cause, dict) else str(cause))
    return " | ".join(parts).lower()


def _h2_kind(causes: str) -> str | None:
    """An HTTP/2 stream the server refused (REFUSED_STREAM, h2's "refused stream before processing any
    application logic"): RFC 9113 §8.7 says it never ran, so any method may go again. hyper resends
    those itself, and the streams a graceful GOAWAY left unprocessed; a stream that fails otherwise is a
    read error (idempotent-only retry)."""
    if "refused stream" in causes or "refused_stream" in causes:
        return GOAWAY
    if "connection error received: not a result of an error" in causes:
        # h2 (Rust) fails this way only the streams above a graceful GOAWAY's last_stream_id (the server's
        # GOAWAY, NO_ERROR): RFC 9113 §6.8, never processed, so any method may go again. reqwest resends
        # some itself, within its own retry budget; the rest came to us as read errors, which failed plain
        # POSTs and, counted by the breaker, opened it against a healthy server rotating its connections
        # (every 10 streams at 50 in flight: 329 of 400 POSTs ended in CircuitOpenError)
        return GOAWAY
    if "stream closed because of" in causes:
        # h2 failing every open stream of a connection that went away under them (a server rotating its
        # connections closes right after its GOAWAY): may have run, so idempotent-only retry, as httpx's
        # WriteError after a GOAWAY; neutral for the breaker, or one rotation with N streams in flight
        # would count as N failures and open it against a healthy server
        return CLOSED
    return None


_CLOSED_INPUT = re.compile(r"ConnectionInputs\.(\w+) in state ConnectionState\.CLOSED")


def _h2_closed(exc: BaseException) -> str | None:
    """The input h2's state machine refused on a closed connection ("Invalid input
    ConnectionInputs.SEND_HEADERS in state ConnectionState.CLOSED": "SEND_HEADERS"), or None."""
    for err in (exc, exc.__cause__, exc.__context__):
        found = _CLOSED_INPUT.search(str(err)) if err is not None else None
        if found:
            return found.group(1)
    return None


def _h2_error(exc: BaseException) -> bool:
    """Whether ``exc`` is h2's own error (``h2.exceptions``), raised past httpcore without its wrapping."""
    return type(exc).__module__ == "h2.exceptions"


def _h2_stream_closed(exc: BaseException) -> bool:
    """Whether a LocalProtocolError is h2's StreamClosedError: a send on a stream the server had closed."""
    return any(type(err).__name__ == "StreamClosedError" for err in _chain(exc))


def _chain(exc: BaseException, depth: int = 5) -> Iterator[BaseException]:
    """``exc`` and the errors behind it (``__cause__``, else ``__context__``), at most ``depth`` of them."""
    seen: BaseException | None = exc
    for _ in range(depth):
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


def _goaway_last_stream_id(exc: BaseException) -> int | None:
    """last_stream_id of a graceful (NO_ERROR) GOAWAY behind this error, or None.

    httpcore resends streams above last_stream_id itself; it raises for the rest, and for those a GOAWAY
    does not mean "unprocessed": httpcore checks for the GOAWAY before looking for a response that already
    arrived, so a stream the server answered can fail too (found with tests/http/test_http2.py's rotating
    server; our httpx connections take such an answer now, ``_h2_goaway.answered_meanwhile``, but an answer
    arriving in a read after the GOAWAY is still lost). Only last_stream_id 0 proves that no stream ran.
    """
    # httpx re-raises httpcore's error with only its text; the h2 event is on the httpcore error (__cause__).
    for err in (exc, exc.__cause__, exc.__context__):
        event = err.args[0] if err is not None and err.args else None
        if type(event).__name__ == "ConnectionTerminated":
            if int(getattr(event, "error_code", 1)) != 0:
                return None
            return int(getattr(event, "last_stream_id", None) or 0)
    return None


def _cert_failure(exc: BaseException) -> bool:
    """Whether a connect error is a certificate that didn't verify: no retry fixes that."""
    import ssl

    return any(isinstance(err, ssl.SSLCertVerificationError) for err in _chain(exc))
