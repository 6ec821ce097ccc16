"""An ASGI app serving the metrics endpoint, for FastAPI / Starlette (``app.mount("/metrics", ...)``).

Plain ASGI (no Starlette import): mount it anywhere. Large registries render on a worker thread so the
event loop is never held for long.
"""

from __future__ import annotations

from ..metrics import MetricsRegistry, get_metrics
from ._common import ASGIApp, Response, Scope, asgi_app, metrics_response, respond_off_loop, scope_query

__all__ = ["make_asgi_app", "metrics_asgi_app"]


def make_asgi_app(registry: MetricsRegistry | None = None, *, token: str | None = None) -> ASGIApp:
    """An ASGI app answering GET with the metrics of ``registry`` (default: the process-wide one)."""

    async def respond(scope: Scope, headers: dict[str, str]) -> Response:
        reg = registry or get_metrics()

        def render() -> Response:
            return metrics_response(
                reg,
                accept=headers.get("accept"),
                query=scope_query(scope),
                authorization=headers.get("authorization"),
                token=token,
                accept_encoding=headers.get("accept-encoding"),
            )

        return await respond_off_loop(reg, render)

    return asgi_app(respond)


metrics_asgi_app: ASGIApp = make_asgi_app()
"""The process-wide registry as an ASGI app, no token: ``app.mount("/metrics", metrics_asgi_app)``."""
