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

from typing import TYPE_CHECKING

from infra._lazy import lazy_exports

# Lazy: `import infra.server` stays cheap (http.server pulls in email.*; most processes never serve).
if TYPE_CHECKING:
    from infra.server._aiohttp import make_aiohttp_handler as make_aiohttp_handler
    from infra.server._aiohttp import metrics_aiohttp_handler as metrics_aiohttp_handler
    from infra.server._asgi import make_asgi_app as make_asgi_app
    from infra.server._asgi import metrics_asgi_app as metrics_asgi_app
    from infra.server._thread import MetricsServer as MetricsServer
    from infra.server._thread import serve_metrics as serve_metrics
    from infra.server._thread import serve_metrics_from_config as serve_metrics_from_config
    from infra.server._wsgi import make_wsgi_app as make_wsgi_app
    from infra.server._wsgi import metrics_wsgi_app as metrics_wsgi_app
    from infra.server.dashboard import dashboard_aiohttp_handler as dashboard_aiohttp_handler
    from infra.server.dashboard import dashboard_asgi_app as dashboard_asgi_app
    from infra.server.dashboard import make_dashboard_aiohttp_handler as make_dashboard_aiohttp_handler
    from infra.server.dashboard import make_dashboard_asgi_app as make_dashboard_asgi_app
    from infra.server.dashboard import make_dashboard_wsgi_app as make_dashboard_wsgi_app
else:
    __all__, __getattr__, __dir__ = lazy_exports(__name__)
