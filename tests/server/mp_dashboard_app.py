"""A WSGI app for the multi-process dashboard test: every request is one timed cache lookup; /dashboard
is served by whichever worker gets the request (a plain module: tests/ has no packages)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from infra.cache import Cache, CacheConfig
from infra.metrics import timed

_cache: Cache | None = None
_dashboard: Any = None


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    global _cache, _dashboard
    path = environ.get("PATH_INFO", "")
    if path.startswith("/dashboard"):
        if _dashboard is None:  # built in the worker, after the fork (its history thread too)
            from infra.server import make_dashboard_wsgi_app

            _dashboard = make_dashboard_wsgi_app()
        environ["SCRIPT_NAME"], environ["PATH_INFO"] = "/dashboard", path[len("/dashboard") :]
        return _dashboard(environ, start_response)  # type: ignore[no-any-return]
    if _cache is None:
        _cache = Cache(CacheConfig(path=os.environ["MP_CACHE_PATH"]), export_metrics=True)
    key = environ.get("QUERY_STRING", "") or "none"
    time.sleep(0.02)  # a sync worker is busy meanwhile: concurrent requests spread over the workers
    with timed("mp_work"):
        _cache.get_or_compute("mp", key, lambda: key)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
