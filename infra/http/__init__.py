"""Pooled, retrying HTTP: ``AsyncPerfClient`` (aiohttp; httpx + h2 for HTTP/2 origins) and ``PerfClient``
(sync, httpx), with one deadline per call, retries honouring Retry-After, a per-origin retry budget and
circuit breaker, per-origin metrics, and optional response caching through infra.cache.

::

    from infra.http import AsyncPerfClient
    async with AsyncPerfClient(get_config().http) as client:   # or AsyncPerfClient(): the defaults
        r = await client.get("http://127.0.0.1:8080/v1/voices")
        r.raise_for_status().json()
        async with client.stream("POST", url, json=body, idempotent=True) as s:
            async for line in s.aiter_lines(): ...

The clients (and aiohttp / httpx behind them) load on first use, so ``import infra.http`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infra.config.sections.http import (
    BreakerConfig,
    HttpCacheConfig,
    HttpConfig,
    RetryBudgetConfig,
    RetryConfig,
    TimeoutConfig,
)
from infra.http._errors import (
    Attempt,
    CircuitOpenError,
    DeadlineExceeded,
    HTTPError,
    HTTPStatusError,
    PoolTimeout,
    RetryAfterTooLong,
    RetryBudgetExhausted,
    TransportError,
)
from infra.http._response import AsyncStreamResponse, Headers, Response, StreamResponse

if TYPE_CHECKING:
    from infra.http._async_client import AsyncPerfClient
    from infra.http._sync_client import PerfClient

__all__ = [
    "AsyncPerfClient",
    "AsyncStreamResponse",
    "Attempt",
    "BreakerConfig",
    "CircuitOpenError",
    "DeadlineExceeded",
    "HTTPError",
    "HTTPStatusError",
    "Headers",
    "HttpCacheConfig",
    "HttpConfig",
    "PerfClient",
    "PoolTimeout",
    "Response",
    "RetryAfterTooLong",
    "RetryBudgetConfig",
    "RetryBudgetExhausted",
    "RetryConfig",
    "StreamResponse",
    "TimeoutConfig",
    "TransportError",
]

_LAZY = {"AsyncPerfClient": "infra.http._async_client", "PerfClient": "infra.http._sync_client"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'infra.http' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
