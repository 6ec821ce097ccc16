"""A WSGI app for the multi-process tests: every request is one timed get_or_compute; /metrics combined."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from infra.cache import Cache, CacheConfig
from infra.metrics import timed
from infra.server import metrics_wsgi_app

_cache: Cache | None = None


def _get_cache() -> Cache:
    global _cache
    if _cache is None:  # built in the worker, after the fork
        _cache = Cache(CacheConfig(path=os.environ["MP_CACHE_PATH"]))
    return _cache


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/metrics":
        return metrics_wsgi_app(environ, start_response)
    key = environ.get("QUERY_STRING", "") or "none"
    with timed("mp_work"):
        _get_cache().get_or_compute("mp", key, lambda: key)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


_metrics_asgi: Any = None


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The same over ASGI, for ``uvicorn --workers`` (spawned workers, not forked)."""
    global _metrics_asgi
    if scope["type"] == "http" and scope["path"] == "/metrics":
        if _metrics_asgi is None:
            from infra.server import make_asgi_app

            _metrics_asgi = make_asgi_app()
        await _metrics_asgi(scope, receive, send)
        return
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        return
    key = scope.get("query_string", b"").decode() or "none"
    with timed("mp_work"):
        await _get_cache().aget_or_compute("mp", key, lambda: key)
    body = str(os.getpid()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
