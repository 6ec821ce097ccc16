"""What every /metrics and /dashboard front end shares: the bearer-token check, the response for a
request, and the thin WSGI / ASGI edges that send a response (each front end only maps its request)."""

from __future__ import annotations

import contextlib
import hmac
import importlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Protocol, cast
from urllib.parse import parse_qs

# The cache's get_stats() section: present (empty) before the first cache call, as the page expects.
from ..cache import observability as _cache_observability  # noqa: F401
from ..metrics import MetricsRegistry, get_metrics
from ..metrics.exposition import negotiate, render

__all__ = [
    "METHOD_NOT_ALLOWED",
    "ASGIApp",
    "Receive",
    "Response",
    "Scope",
    "Send",
    "WSGIApp",
    "accepts_gzip",
    "asgi_app",
    "asgi_headers",
    "asgi_lifespan",
    "asgi_reply",
    "authorized",
    "metrics_response",
    "respond_off_loop",
    "series_count",
    "wsgi_app",
    "wsgi_reply",
]

# Above this many series a scrape renders on a worker thread instead of the event loop. Text for 1000
# histogram series takes ~17-60 ms (bench/bench_metrics.py; more sketch keys per series cost more), so
# 64 series stay well under a few ms inline, and a thread hop per scrape costs nothing that matters.
INLINE_RENDER_MAX_SERIES = 64
GZIP_MIN_BYTES = 1024

Response = tuple[int, list[tuple[str, str]], bytes]

# ASGI as the spec gives it (asgiref.typing's names): the apps only read the scope and the events they
# receive, so any mapping will do for those (Starlette's MutableMapping[str, Any], asgiref's TypedDicts);
# the events they send are plain dicts, which a send taking MutableMapping[str, Any] (Starlette's) accepts.
Scope = Mapping[str, object]
"""An ASGI connection scope (``type``, ``path``, ``headers``, ...), read only."""
Receive = Callable[[], Awaitable[Mapping[str, object]]]
"""ASGI ``receive``: awaits the next event from the server."""
Send = Callable[[MutableMapping[str, object]], Awaitable[None]]
"""ASGI ``send``: hands an event to the server."""
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI 3 application."""

Environ = Mapping[str, object]
"""A WSGI environ (PEP 3333), read only: typeshed's ``dict[str, Any]`` passes."""


class StartResponse(Protocol):
    """WSGI's ``start_response`` as these apps call it: status line and headers (typeshed's
    ``wsgiref.types.StartResponse``, which also takes ``exc_info``, satisfies it)."""

    def __call__(self, status: str, headers: list[tuple[str, str]], /) -> object: ...


WSGIApp = Callable[[Environ, StartResponse], list[bytes]]
"""A WSGI application (PEP 3333) answering with one body chunk."""

METHOD_NOT_ALLOWED: Response = (
    405,
    [("Content-Type", "text/plain; charset=utf-8"), ("Allow", "GET, HEAD")],
    b"",
)
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}

# Where the parts declare their get_stats() views (beside the histograms they read). A process serving a
# fleet (multi-process mode, e.g. ``python -m infra metrics serve`` beside the workers) shows series of
# parts it may never have imported itself, so it imports these declarations; a worker imported them
# when it made its calls.
PART_DECLARATIONS = ("infra.http._metrics", "infra.ollama._handles", "infra.db.timing")


def declare_parts(registry: MetricsRegistry) -> None:
    """Import every part's view declarations when ``registry`` combines a fleet (see above)."""
    if registry.multiprocess:
        for module in PART_DECLARATIONS:
            # A part whose optional dependency is missing has no series either.
            with contextlib.suppress(ImportError):
                importlib.import_module(module)


declare_parts(get_metrics())


def authorized(header: str | None, token: str | None) -> bool:
    """True if no token is required, or ``header`` is ``Bearer <token>`` (constant-time compare)."""
    if token is None:
        return True
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def series_count(registry: MetricsRegistry) -> int:
    return sum(m.series_count() for m in registry.collect())


def metrics_response(
    registry: MetricsRegistry | None,
    *,
    accept: str | None,
    query: str,
    authorization: str | None,
    token: str | None,
    accept_encoding: str | None = None,
) -> Response:
    """Status, headers and body for one GET of the metrics endpoint (pure apart from rendering).

    Bodies over ``GZIP_MIN_BYTES`` are gzip-compressed when ``accept_encoding`` allows it (Prometheus
    always asks): 1000 histogram series are ~2.5 MB of text and compress ~20x.
    """
    if not authorized(authorization, token):
        body = b"401 Unauthorized: send 'Authorization: Bearer <token>'\n"
        return (
            401,
            [("Content-Type", "text/plain; charset=utf-8"), ("WWW-Authenticate", 'Bearer realm="metrics"')],
            body,
        )
    fmt = parse_qs(query).get("format", [None])[0] if query else None
    try:
        kind = negotiate(accept, fmt)
    except ValueError as exc:
        return 400, [("Content-Type", "text/plain; charset=utf-8")], f"400 Bad Request: {exc}\n".encode()
    # With multi-process mode on, every worker answers with the combined series of all workers.
    body, ctype = render((registry or get_metrics()).combined_view(), kind)
    headers = [("Content-Type", ctype), ("Cache-Control", "no-store"), ("Vary", "Accept, Accept-Encoding")]
    if len(body) >= GZIP_MIN_BYTES and accepts_gzip(accept_encoding):
        import gzip

        # Level 1: most of the size win for a fraction of the CPU of the default level 9.
        body = gzip.compress(body, compresslevel=1)
        headers.append(("Content-Encoding", "gzip"))
    return 200, headers, body


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True if an Accept-Encoding header allows gzip (listed, or ``*``, with q > 0)."""
    if not accept_encoding:
        return False
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        key, _, value = params.strip().partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value) > 0
            except ValueError:
                return False
        return True
    return False


async def respond_off_loop(registry: MetricsRegistry, respond: Callable[[], Response]) -> Response:
    """``respond()``, on a worker thread when it would hold the event loop: a large registry, or one
    combining the workers of a multi-process server (that reads their snapshot files)."""
    if registry.multiprocess or series_count(registry) > INLINE_RENDER_MAX_SERIES:
        import asyncio  # lazy: importing the server stays free of an event loop

        return await asyncio.get_running_loop().run_in_executor(None, respond)
    return respond()


def wsgi_app(respond: Callable[[Environ], Response]) -> WSGIApp:
    """A WSGI app answering GET and HEAD with ``respond(environ)``, other methods with 405."""

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        method = environ_str(environ, "REQUEST_METHOD", "GET")
        response = respond(environ) if method in ("GET", "HEAD") else METHOD_NOT_ALLOWED
        return wsgi_reply(start_response, method, response)

    return app


def environ_str(environ: Environ, key: str, default: str) -> str:
    """``environ[key]`` (a str, as PEP 3333 has it for CGI variables) or ``default``."""
    return cast(str, environ.get(key, default))


def environ_opt(environ: Environ, key: str) -> str | None:
    """``environ[key]``, None when absent (an ``HTTP_*`` header the request did not send)."""
    return cast("str | None", environ.get(key))


def scope_str(scope: Scope, key: str, default: str) -> str:
    """``scope[key]`` (a str in the ASGI spec: ``path``, ``method``, ...) or ``default``."""
    return cast(str, scope.get(key, default))


def scope_query(scope: Scope) -> str:
    """The ASGI ``query_string`` (bytes), decoded as latin-1."""
    return cast(bytes, scope.get("query_string", b"")).decode("latin-1")


def wsgi_reply(start_response: StartResponse, method: str, response: Response) -> list[bytes]:
    """Send ``response`` through WSGI's ``start_response`` (no body for HEAD)."""
    status, headers, body = response
    start_response(
        f"{status} {_REASONS.get(status, 'Error')}", [*headers, ("Content-Length", str(len(body)))]
    )
    return [b"" if method == "HEAD" else body]


def asgi_app(
    respond: Callable[[Scope, dict[str, str]], Awaitable[Response]],
    on_startup: Callable[[], object] | None = None,
) -> ASGIApp:
    """An ASGI app answering GET and HEAD with ``await respond(scope, headers)`` (header names
    lower-cased), other methods with 405, and the lifespan protocol (``on_startup`` at startup)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await asgi_lifespan(receive, send, on_startup)
        if scope["type"] != "http":
            return
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            response = METHOD_NOT_ALLOWED
        else:
            response = await respond(scope, asgi_headers(scope))
        await asgi_reply(send, scope, response)

    return app


def asgi_headers(scope: Scope) -> dict[str, str]:
    """The request headers of an ASGI ``scope``, names lower-cased."""
    headers = cast("Iterable[tuple[bytes, bytes]]", scope.get("headers", []))
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}


async def asgi_lifespan(receive: Receive, send: Send, on_startup: Callable[[], object] | None = None) -> None:
    """Answer an ASGI lifespan scope until shutdown, calling ``on_startup`` at startup."""
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            if on_startup is not None:
                on_startup()
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def asgi_reply(send: Send, scope: Scope, response: Response) -> None:
    """Send ``response`` over ASGI (no body for HEAD)."""
    status, headers, body = response
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body})
