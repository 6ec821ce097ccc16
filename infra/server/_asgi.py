"""An ASGI app serving the metrics endpoint, for FastAPI / Starlette (``app.mount("/metrics", ...)``).

Plain ASGI (no Starlette import): mount it anywhere. Large registries render on a worker thread so the
event loop is never held for long.
"""

from __future__ import annotations

from ..metrics import MetricsRegistry, get_metrics
from ._common import (
    METHOD_NOT_ALLOWED,
    ASGIApp,
    Receive,
    Response,
    Scope,
    Send,
    asgi_headers,
    asgi_lifespan,
    asgi_reply,
    metrics_response,
    respond_off_loop,
)

__all__ = ["make_asgi_app", "metrics_asgi_app"]


def make_asgi_app(registry: MetricsRegistry | None = None, *, token: str | None = None) -> ASGIApp:
    """An ASGI app answering GET with the metrics of ``registry`` (default: the process-wide one)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await asgi_lifespan(receive, send)
        if scope["type"] != "http":
            return
        headers = asgi_headers(scope)
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            response = METHOD_NOT_ALLOWED
        else:
            reg = registry or get_metrics()

            def respond() -> Response:
                return metrics_response(
                    reg,
                    accept=headers.get("accept"),
                    query=scope.get("query_string", b"").decode("latin-1"),
                    authorization=headers.get("authorization"),
                    token=token,
                    accept_encoding=headers.get("accept-encoding"),
                )

            response = await respond_off_loop(reg, respond)
        await asgi_reply(send, scope, response)

    return app


metrics_asgi_app: ASGIApp = make_asgi_app()
"""The process-wide registry as an ASGI app, no token: ``app.mount("/metrics", metrics_asgi_app)``."""
