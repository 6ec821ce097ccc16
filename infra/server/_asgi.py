"""An ASGI app serving the metrics endpoint, for FastAPI / Starlette (``app.mount("/metrics", ...)``).

Plain ASGI (no Starlette import): mount it anywhere. Large registries render on a worker thread so the
event loop is never held for long.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..metrics import MetricsRegistry, get_metrics
from ._common import INLINE_RENDER_MAX_SERIES, metrics_response, series_count

__all__ = ["make_asgi_app", "metrics_asgi_app"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def make_asgi_app(registry: MetricsRegistry | None = None, *, token: str | None = None) -> ASGIApp:
    """An ASGI app answering GET with the metrics of ``registry`` (default: the process-wide one)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            status, hdrs, body = (
                405,
                [("Content-Type", "text/plain; charset=utf-8"), ("Allow", "GET, HEAD")],
                b"",
            )
        else:
            reg = registry or get_metrics()

            def respond() -> tuple[int, list[tuple[str, str]], bytes]:
                return metrics_response(
                    reg,
                    accept=headers.get("accept"),
                    query=scope.get("query_string", b"").decode("latin-1"),
                    authorization=headers.get("authorization"),
                    token=token,
                    accept_encoding=headers.get("accept-encoding"),
                )

            # Combining workers reads their snapshot files: never on the event loop.
            if reg.multiprocess or series_count(reg) > INLINE_RENDER_MAX_SERIES:
                import asyncio

                status, hdrs, body = await asyncio.get_running_loop().run_in_executor(None, respond)
            else:
                status, hdrs, body = respond()
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in hdrs]
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body})

    return app


metrics_asgi_app: ASGIApp = make_asgi_app()
"""The process-wide registry as an ASGI app, no token: ``app.mount("/metrics", metrics_asgi_app)``."""
