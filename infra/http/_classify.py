"""Map backend exceptions (aiohttp, httpx) to the error kinds the retry core decides on."""

from __future__ import annotations

import asyncio

from infra.http._core import CONNECT, POOL, READ

__all__ = ["FATAL", "classify_aiohttp", "classify_httpx"]

FATAL = "fatal"  # a failure no retry can fix (bad URL, TLS verification): never retried


def classify_aiohttp(exc: BaseException) -> str:
    import aiohttp

    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
        return FATAL
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        return CONNECT
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError, aiohttp.TooManyRedirects)):
        return FATAL
    if isinstance(exc, (aiohttp.ClientError, OSError, asyncio.IncompleteReadError)):
        return READ
    return FATAL


def classify_httpx(exc: BaseException) -> str:
    import httpx

    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return CONNECT
    if isinstance(exc, httpx.PoolTimeout):
        return POOL
    if isinstance(exc, httpx.LocalProtocolError):
        return CONNECT  # h2 refused to send on a connection already closed: nothing reached the server
    if isinstance(exc, httpx.RemoteProtocolError) and _unprocessed_goaway(exc):
        return CONNECT
    if isinstance(exc, (httpx.TransportError, OSError)):
        return READ
    return FATAL


def _unprocessed_goaway(exc: BaseException) -> bool:
    """A graceful GOAWAY (NO_ERROR) failed this stream: the server promises to finish every stream it
    accepted, so ours was never processed and is safe to send again, POST included. httpcore retries
    only part of these itself (stream id above last_stream_id, and not last_stream_id == 0)."""
    event = exc.args[0] if exc.args else None
    return type(event).__name__ == "ConnectionTerminated" and int(getattr(event, "error_code", 1) or 0) == 0
