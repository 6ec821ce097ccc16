"""An aiohttp handler serving the metrics endpoint: ``app.router.add_get("/metrics", handler)``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..metrics import MetricsRegistry, get_metrics
from ._common import Response, metrics_response, respond_off_loop

if TYPE_CHECKING:  # aiohttp is an optional extra, imported by the handler when it runs
    from aiohttp import web

__all__ = ["make_aiohttp_handler", "metrics_aiohttp_handler"]


def make_aiohttp_handler(
    registry: MetricsRegistry | None = None, *, token: str | None = None
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp request handler for ``registry`` (default: the process-wide one)."""

    async def handler(request: web.Request) -> web.Response:
        from aiohttp import web  # lazy: only apps that use aiohttp pay for importing it

        reg = registry or get_metrics()

        def respond() -> Response:
            return metrics_response(
                reg,
                accept=request.headers.get("Accept"),
                query=request.query_string,
                authorization=request.headers.get("Authorization"),
                token=token,
                accept_encoding=request.headers.get("Accept-Encoding"),
            )

        status, headers, body = await respond_off_loop(reg, respond)
        hdrs = dict(headers)
        ctype = hdrs.pop("Content-Type")
        # aiohttp wants content_type and charset apart; keep the version parameter in the header.
        resp = web.Response(status=status, body=body, headers=hdrs)
        resp.headers["Content-Type"] = ctype
        return resp

    return handler


metrics_aiohttp_handler = make_aiohttp_handler()
"""The process-wide registry, no token: ``app.router.add_get("/metrics", metrics_aiohttp_handler)``."""
