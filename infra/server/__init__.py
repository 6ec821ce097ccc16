"""The /metrics endpoint: a background-thread server, an ASGI app, a WSGI app and an aiohttp handler.

All three serve the same thing (see ``infra.metrics.exposition``): Prometheus text 0.0.4 by default,
OpenMetrics 1.0.0 when the Accept header asks for ``application/openmetrics-text``, JSON with
``?format=json`` or ``Accept: application/json``; optional bearer token (401 without it).

    from infra.server import serve_metrics
    srv = serve_metrics()                     # 127.0.0.1:9464, daemon thread
    app.mount("/metrics", metrics_asgi_app)   # FastAPI / Starlette
    app.router.add_get("/metrics", metrics_aiohttp_handler)  # aiohttp
    metrics_wsgi_app                          # gunicorn / Flask / Django (WSGI)
    app.mount("/dashboard", dashboard_asgi_app)                           # the charts (dashboard.py)
    app.router.add_get("/dashboard{tail:.*}", dashboard_aiohttp_handler)  # the same in aiohttp

Importing this package imports no web framework: the aiohttp handler imports aiohttp when it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._aiohttp import make_aiohttp_handler, metrics_aiohttp_handler
    from ._asgi import make_asgi_app, metrics_asgi_app
    from ._thread import MetricsServer, serve_metrics, serve_metrics_from_config
    from ._wsgi import make_wsgi_app, metrics_wsgi_app
    from .dashboard import (
        dashboard_aiohttp_handler,
        dashboard_asgi_app,
        make_dashboard_aiohttp_handler,
        make_dashboard_asgi_app,
        make_dashboard_wsgi_app,
    )

__all__ = [
    "MetricsServer",
    "dashboard_aiohttp_handler",
    "dashboard_asgi_app",
    "make_aiohttp_handler",
    "make_asgi_app",
    "make_dashboard_aiohttp_handler",
    "make_dashboard_asgi_app",
    "make_dashboard_wsgi_app",
    "make_wsgi_app",
    "metrics_aiohttp_handler",
    "metrics_asgi_app",
    "metrics_wsgi_app",
    "serve_metrics",
    "serve_metrics_from_config",
]

# Lazy: `import infra.server` stays cheap (http.server pulls in email.*; most processes never serve).
_WHERE = {
    "MetricsServer": "._thread",
    "serve_metrics": "._thread",
    "serve_metrics_from_config": "._thread",
    "make_asgi_app": "._asgi",
    "metrics_asgi_app": "._asgi",
    "make_aiohttp_handler": "._aiohttp",
    "metrics_aiohttp_handler": "._aiohttp",
    "make_wsgi_app": "._wsgi",
    "metrics_wsgi_app": "._wsgi",
    "dashboard_asgi_app": ".dashboard",
    "dashboard_aiohttp_handler": ".dashboard",
    "make_dashboard_asgi_app": ".dashboard",
    "make_dashboard_aiohttp_handler": ".dashboard",
    "make_dashboard_wsgi_app": ".dashboard",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'infra.server' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
