"""Map backend exceptions (aiohttp, httpx) to the error kinds the retry core decides on."""

from __future__ import annotations

import asyncio

from infra.http._core import CLOSED, CONNECT, GOAWAY, POOL, READ

__all__ = ["FATAL", "classify_aiohttp", "classify_httpx"]

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
    if isinstance(exc, httpx.LocalProtocolError):
        # h2 refused to send on a connection already closed: nothing reached the server. Any other local
        # protocol error is the request's own fault (a header h11 / h2 refuse): no retry fixes it, and it
        # says nothing about the origin's health.
        return CONNECT if _h2_closed(exc) else FATAL
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


def _h2_closed(exc: BaseException) -> bool:
    """Whether a LocalProtocolError is h2's state machine refusing to send on a closed connection
    ("Invalid input ConnectionInputs.SEND_HEADERS in state ConnectionState.CLOSED")."""
    for err in (exc, exc.__cause__, exc.__context__):
        if err is not None and "ConnectionState.CLOSED" in str(err):
            return True
    return False


def _goaway_last_stream_id(exc: BaseException) -> int | None:
    """last_stream_id of a graceful (NO_ERROR) GOAWAY behind this error, or None.

    httpcore resends streams above last_stream_id itself; it raises for the rest, and for those a GOAWAY
    does not mean "unprocessed": httpcore checks for the GOAWAY before looking for a response that already
    arrived, so a stream the server answered can fail too (found with tests/http/test_http2.py's rotating
    server). Only last_stream_id 0 proves that no stream ran.
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

    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
