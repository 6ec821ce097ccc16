"""/dashboard: hit rates, latencies, errors, savings and breakers of the last hour, in a browser.

Served next to /metrics by the same servers (the thread server routes ``/dashboard...`` here; for
FastAPI/Starlette mount ``dashboard_asgi_app``, for aiohttp add ``dashboard_aiohttp_handler`` on
``/dashboard{tail:.*}``, for WSGI mount ``make_dashboard_wsgi_app()``), behind the same bearer token.
Three kinds of request:

- ``/dashboard`` (or ``/dashboard/``): the HTML page. It holds no numbers, so it needs no token.
- ``/dashboard/static/<file>``: the page's script and style, shipped in the package (no CDN).
- ``/dashboard/data?since=<seq>``: the numbers, as JSON (token required when one is set: the page
  sends ``Authorization: Bearer`` with the token given to it as ``?token=`` in its own URL). Only the
  history rows after ``since`` are sent, so a refresh costs the observed process a few rows.

The history is a ``MetricsHistory`` ring per registry (``history_for``), started by the first server
or app that serves that registry's dashboard, sampling every 2 s for an hour.
"""

from __future__ import annotations

import json
import math
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ..metrics import MetricsRegistry, get_metrics
from ..metrics.history import DEFAULT_HISTORY_INTERVAL, HistoryPage, MetricsHistory
from ._common import (
    ASGIApp,
    Environ,
    Receive,
    Response,
    Scope,
    Send,
    WSGIApp,
    accepts_gzip,
    asgi_app,
    authorized,
    environ_opt,
    environ_str,
    scope_query,
    scope_str,
    wsgi_app,
)
from ._dashboard_source import ColumnSampler, current_view

if TYPE_CHECKING:  # aiohttp is an optional extra, imported by the handler when it runs
    from aiohttp import web

__all__ = [
    "DEFAULT_REFRESH_SECONDS",
    "dashboard_aiohttp_handler",
    "dashboard_asgi_app",
    "dashboard_response",
    "dashboard_route",
    "history_for",
    "make_dashboard_aiohttp_handler",
    "make_dashboard_asgi_app",
    "make_dashboard_wsgi_app",
]

# The page asks for new rows this often. The ring samples every 2 s; 5 s keeps the page's own cost on
# the observed process far under 1 % of a core (bench/bench_dashboard.py) and still feels live.
DEFAULT_REFRESH_SECONDS = 5.0

_STATIC = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
# Everything the page loads comes from this server: no CDN, no inline script, nothing to exfiltrate to.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'"
)
_COMMON_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),  # the page's URL may carry ?token=
]

_histories: weakref.WeakKeyDictionary[MetricsRegistry, MetricsHistory] = weakref.WeakKeyDictionary()
_histories_lock = threading.Lock()
_assets: dict[str, bytes] = {}


def history_for(registry: MetricsRegistry | None = None, *, start: bool = True) -> MetricsHistory:
    """The history ring of ``registry`` (default: the process-wide one), started unless ``start=False``.

    Once started it samples for the life of the process (or of the registry), whether or not a server
    still runs: ~0.1 ms of CPU every 2 s (BENCHMARKS.md), so a server started later still shows the
    whole last hour. ``history_for(reg).stop()`` ends it.
    """
    reg = registry or get_metrics()
    with _histories_lock:
        history = _histories.get(reg)
        if history is None:
            history = _histories[reg] = MetricsHistory(ColumnSampler(reg), interval=DEFAULT_HISTORY_INTERVAL)
    if start and not history.running:
        history.start()
    return history


def _asset(name: str) -> bytes:
    body = _assets.get(name)
    if body is None:
        body = _assets[name] = (resources.files("infra.server") / "static" / name).read_bytes()
    return body


def _page(base: str) -> bytes:
    # base is the path the page is served under ("/dashboard", or where an app mounted it): the only
    # thing that differs between servers. It is HTML-escaped because it comes from the request.
    from html import escape

    template = _asset("dashboard.html").decode()
    return template.replace("{{BASE}}", escape(base, quote=True)).encode()


def _json_number(v: float) -> float | None:
    # Six significant digits: a chart is ~300 px tall, and repr's 17 digits would triple the JSON of
    # an hour's history. Counters stay exact (integers print whole; 6 digits only cut fractions).
    if not math.isfinite(v):
        return None
    if v.is_integer() and abs(v) < 2**53:
        return v
    return float(f"{v:.6g}")


def rows_json(page: HistoryPage) -> dict[str, Any]:
    """A history page as the page reads it: times (ms resolution) and columns (null for no value)."""
    return {
        "seq": page.seq,
        "reset": page.reset,
        "t": [round(t, 3) for t in page.t],
        "columns": {k: [_json_number(v) for v in vs] for k, vs in page.columns.items()},
    }


def data_document(registry: MetricsRegistry, since: int) -> dict[str, Any]:
    """The JSON the page polls: history rows after ``since`` plus the tiles' current values."""
    history = history_for(registry)
    if history.seq == 0:  # a page opened in the first interval: show the numbers at once
        history.sample_now()
    return {
        **rows_json(history.since(since)),
        "epoch": history.epoch,
        "interval": history.interval,
        "window": history.window,
        "refresh": DEFAULT_REFRESH_SECONDS,
        "now": time.time(),
        "current": current_view(registry),
    }


def dashboard_response(
    registry: MetricsRegistry | None,
    *,
    subpath: str,
    base: str,
    query: str,
    authorization: str | None,
    token: str | None,
    accept_encoding: str | None = None,
) -> Response:
    """Status, headers and body for one GET under the dashboard (``subpath`` is what follows ``base``)."""
    text = [("Content-Type", "text/plain; charset=utf-8"), *_COMMON_HEADERS]
    if subpath in ("", "/", "/index.html"):
        body = _page(base)
        headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Security-Policy", _CSP),
            ("Cache-Control", "no-cache"),
            *_COMMON_HEADERS,
        ]
        return 200, headers, body
    if subpath.startswith("/static/"):
        name = subpath[len("/static/") :]
        if name not in _STATIC:
            return 404, text, b"404 Not Found\n"
        return (
            200,
            [("Content-Type", _STATIC[name]), ("Cache-Control", "no-cache"), *_COMMON_HEADERS],
            _asset(name),
        )
    if subpath != "/data":
        return 404, text, b"404 Not Found: the dashboard is at /dashboard\n"
    params = parse_qs(query) if query else {}
    given = params.get("token", [None])[0]
    from_query = token is not None and given is not None and authorized(f"Bearer {given}", token)
    if not (from_query or authorized(authorization, token)):
        headers = [
            ("Content-Type", "application/json"),
            ("WWW-Authenticate", 'Bearer realm="metrics"'),
            *_COMMON_HEADERS,
        ]
        return 401, headers, b'{"error":"unauthorized: open the dashboard with ?token=<the metrics token>"}'
    try:
        since = int(params.get("since", ["0"])[0])
    except ValueError:
        return 400, text, b"400 Bad Request: since must be an integer\n"
    doc = data_document(registry or get_metrics(), since)
    body = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store"), *_COMMON_HEADERS]
    if len(body) >= 1024 and accepts_gzip(accept_encoding):
        import gzip

        body = gzip.compress(body, compresslevel=1)
        headers.append(("Content-Encoding", "gzip"))
    return 200, headers, body


def dashboard_route(path: str) -> Callable[..., Response]:
    """For a server routing ``path`` (under ``/dashboard``): a responder taking ``metrics_response``'s
    arguments, so the thread server's one call site serves both endpoints."""

    def respond(registry: MetricsRegistry | None, *, accept: str | None = None, **kw: Any) -> Response:
        return dashboard_response(registry, subpath=path[len("/dashboard") :], base="/dashboard", **kw)

    return respond


# -- ASGI (FastAPI / Starlette) ----------------------------------------------------------------------


def make_dashboard_asgi_app(registry: MetricsRegistry | None = None, *, token: str | None = None) -> ASGIApp:
    """An ASGI app serving the dashboard: ``app.mount("/dashboard", make_dashboard_asgi_app(token=...))``.

    Starts the registry's history ring when it starts up (lifespan) or serves its first request.
    """

    async def respond(scope: Scope, headers: dict[str, str]) -> Response:
        path = scope_str(scope, "path", "/")
        root = scope_str(scope, "root_path", "")
        # Starlette's Mount keeps the full path in "path" and the mount point in "root_path".
        subpath = path[len(root) :] if root and path.startswith(root) else path
        return dashboard_response(
            registry,
            subpath=subpath,
            base=root.rstrip("/"),
            query=scope_query(scope),
            authorization=headers.get("authorization"),
            token=token,
            accept_encoding=headers.get("accept-encoding"),
        )

    return asgi_app(respond, lambda: history_for(registry))


# -- aiohttp -----------------------------------------------------------------------------------------


def make_dashboard_aiohttp_handler(
    registry: MetricsRegistry | None = None, *, token: str | None = None
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler: ``app.router.add_get("/dashboard{tail:.*}", make_dashboard_aiohttp_handler())``."""
    history_for(registry)

    async def handler(request: web.Request) -> web.Response:
        from aiohttp import web  # lazy: only apps that use aiohttp pay for importing it

        tail = request.match_info.get("tail", "")
        path = request.path
        base = path[: len(path) - len(tail)] if tail and path.endswith(tail) else path
        status, headers, body = dashboard_response(
            registry,
            subpath=tail,
            base=base.rstrip("/"),
            query=request.query_string,
            authorization=request.headers.get("Authorization"),
            token=token,
            accept_encoding=request.headers.get("Accept-Encoding"),
        )
        return web.Response(status=status, body=body, headers=dict(headers))

    return handler


# -- WSGI (gunicorn / Flask / Django) ---------------------------------------------------------------


def make_dashboard_wsgi_app(registry: MetricsRegistry | None = None, *, token: str | None = None) -> WSGIApp:
    """A WSGI app serving the dashboard where it is mounted (``SCRIPT_NAME``), e.g. with werkzeug's
    ``DispatcherMiddleware(app, {"/dashboard": make_dashboard_wsgi_app()})``."""
    history_for(registry)

    def respond(environ: Environ) -> Response:
        return dashboard_response(
            registry,
            subpath=environ_str(environ, "PATH_INFO", ""),
            base=environ_str(environ, "SCRIPT_NAME", "").rstrip("/"),
            query=environ_str(environ, "QUERY_STRING", ""),
            authorization=environ_opt(environ, "HTTP_AUTHORIZATION"),
            token=token,
            accept_encoding=environ_opt(environ, "HTTP_ACCEPT_ENCODING"),
        )

    return wsgi_app(respond)


_defaults: dict[str, Any] = {}


async def dashboard_asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The process-wide registry's dashboard, no token: ``app.mount("/dashboard", dashboard_asgi_app)``.

    Built on first use, so importing this module starts no history thread."""
    app = _defaults.get("asgi")
    if app is None:
        app = _defaults["asgi"] = make_dashboard_asgi_app()
    await app(scope, receive, send)


async def dashboard_aiohttp_handler(request: web.Request) -> web.Response:
    """The process-wide registry's dashboard, no token: ``app.router.add_get("/dashboard{tail:.*}", ...)``.

    A coroutine function (aiohttp deprecates other handlers), built on first use."""
    handler = _defaults.get("aiohttp")
    if handler is None:
        handler = _defaults["aiohttp"] = make_dashboard_aiohttp_handler()
    return await handler(request)
