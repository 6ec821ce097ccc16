"""Pooled, retrying HTTP: ``AsyncPerfClient`` (aiohttp; httpx + h2 for HTTP/2 origins) and ``PerfClient``
(sync, httpx), with one deadline per call, retries honouring Retry-After, a per-origin retry budget and
circuit breaker, per-origin metrics, and optional response caching through infra.cache.

::

    from infra.http import AsyncPerfClient
    async with AsyncPerfClient(get_config().http) as client:   # or AsyncPerfClient(): the same section
        r = await client.get("http://127.0.0.1:8080/v1/voices")
        r.raise_for_status().json()
        async with client.stream("POST", url, json=body, idempotent=True) as s:
            async for line in s.aiter_lines(): ...

The clients (and aiohttp / httpx behind them) load on first use, so ``import infra.http`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra._lazy import lazy_exports

if TYPE_CHECKING:
    from infra.config.sections.http import BreakerConfig as BreakerConfig
    from infra.config.sections.http import HttpCacheConfig as HttpCacheConfig
    from infra.config.sections.http import HttpConfig as HttpConfig
    from infra.config.sections.http import RetryBudgetConfig as RetryBudgetConfig
    from infra.config.sections.http import RetryConfig as RetryConfig
    from infra.config.sections.http import TimeoutConfig as TimeoutConfig
    from infra.http._async_client import AsyncPerfClient as AsyncPerfClient
    from infra.http._errors import Attempt as Attempt
    from infra.http._errors import CircuitOpenError as CircuitOpenError
    from infra.http._errors import DeadlineExceeded as DeadlineExceeded
    from infra.http._errors import HTTPError as HTTPError
    from infra.http._errors import HTTPStatusError as HTTPStatusError
    from infra.http._errors import PoolTimeout as PoolTimeout
    from infra.http._errors import RetryAfterTooLong as RetryAfterTooLong
    from infra.http._errors import RetryBudgetExhausted as RetryBudgetExhausted
    from infra.http._errors import TransportError as TransportError
    from infra.http._response import AsyncStreamResponse as AsyncStreamResponse
    from infra.http._response import Headers as Headers
    from infra.http._response import JSONValue as JSONValue
    from infra.http._response import Response as Response
    from infra.http._response import StreamResponse as StreamResponse
    from infra.http._sync_client import PerfClient as PerfClient
else:
    __all__, __getattr__, __dir__ = lazy_exports(__name__)
