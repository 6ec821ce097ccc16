"""The /metrics and /dashboard front ends: a misspelled keyword is a mypy error, and the apps type-check where
the frameworks take them (see test_typing.py). ``well_typed_calls_stay_clean`` carries no ignore."""

from __future__ import annotations

from _typeshed.wsgi import WSGIApplication  # typeshed only: mypy reads it, nothing imports it
from aiohttp import web
from starlette.applications import Starlette
from starlette.routing import Mount
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from infra.server import (
    dashboard_aiohttp_handler,
    dashboard_asgi_app,
    make_aiohttp_handler,
    make_asgi_app,
    make_dashboard_wsgi_app,
    make_wsgi_app,
    metrics_aiohttp_handler,
    metrics_asgi_app,
    metrics_wsgi_app,
)


def misspelled() -> None:
    make_asgi_app(tokn="t")  # type: ignore[call-arg]
    make_wsgi_app(registy=None)  # type: ignore[call-arg]
    make_aiohttp_handler(tokn="t")  # type: ignore[call-arg]


async def misused(request: web.Request) -> None:
    await metrics_aiohttp_handler(request).text  # type: ignore[attr-defined]
    metrics_wsgi_app({}, lambda status: None)  # type: ignore[arg-type]


def well_typed_calls_stay_clean() -> None:
    """No ignore here: the apps are what Starlette, aiohttp, werkzeug and typeshed's WSGI types take."""
    Starlette(routes=[Mount("/metrics", app=metrics_asgi_app), Mount("/dashboard", app=dashboard_asgi_app)])
    Starlette().mount("/m", make_asgi_app(token="t"))
    app = web.Application()
    app.router.add_get("/metrics", metrics_aiohttp_handler)
    app.router.add_get("/dashboard{tail:.*}", dashboard_aiohttp_handler)
    wsgi: WSGIApplication = metrics_wsgi_app
    DispatcherMiddleware(wsgi, {"/dashboard": make_dashboard_wsgi_app(token="t")})
