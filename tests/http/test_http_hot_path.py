"""AsyncPerfClient's written-out hot path (``_run``) against its plain reference twin (``_run_reference``:
the shared ``steps`` loop over one attempt, ``_once``): every outcome a call can have, over both backends,
must come out the same, and leave the client in the same state (no slot held, breaker as it was)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from infra.http import (
    AsyncPerfClient,
    BreakerConfig,
    HTTPError,
    RetryBudgetConfig,
    RetryConfig,
    TimeoutConfig,
)
from infra.testing.fault_server import FaultServer

FAST = RetryConfig(backoff=(0.01, 0.02, 0.04))


def _key() -> str:
    return uuid.uuid4().hex[:12]


#: (name, method, path with {key}, call keywords, client keywords)
SCENARIOS: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = [
    ("ok", "GET", "/ok?size=300", {}, {}),
    ("head", "HEAD", "/ok", {}, {}),
    ("post-body", "POST", "/echo/{key}", {"content": b"x" * 100}, {}),
    ("status-404", "GET", "/status/404", {}, {}),
    ("retried-503", "GET", "/fail/{key}?n=2&code=503", {}, {}),
    ("retry-after-0", "GET", "/fail/{key}?n=1&code=429&retry_after=0", {}, {}),
    ("retries-run-out", "GET", "/fail/{key}?n=100&code=503", {}, {"breaker": BreakerConfig(enabled=False)}),
    ("post-not-retried", "POST", "/fail/{key}?n=2&code=503", {}, {}),
    ("post-idempotent", "POST", "/fail/{key}?n=1&code=503", {"idempotent": True}, {}),
    ("reset-retried", "GET", "/reset-before-headers/{key}?n=1", {}, {}),
    ("reset-post-final", "POST", "/reset-before-headers/{key}?n=1", {}, {}),
    ("truncated", "GET", "/truncated", {}, {"retry": RetryConfig(attempts=1, backoff=(0.01,))}),
    (
        "first-byte-limit",
        "GET",
        "/slow-first-byte?delay=0.5",
        {},
        {"timeout": TimeoutConfig(first_byte=0.05)},
    ),
    ("deadline", "GET", "/slow-first-byte?delay=0.5", {"deadline": 0.1}, {}),
    ("retry-after-too-long", "GET", "/fail/{key}?n=1&code=503&retry_after=100", {}, {}),
    (
        "budget-out",
        "GET",
        "/fail/{key}?n=100&code=503",
        {},
        {"retry_budget": RetryBudgetConfig(ratio=0.0, per_second=0.0)},
    ),
    ("redirect", "GET", "/redirect", {}, {}),
]


def _outcome(result: Any) -> tuple[Any, ...]:
    if isinstance(result, HTTPError):
        history = tuple((a.status, a.error) for a in result.history)
        return ("raised", type(result).__name__, getattr(result, "kind", None), history)
    history = tuple((a.status, a.error) for a in result.history)
    return ("answered", result.status, result.content, history, result.http_version)


async def _call(client: AsyncPerfClient, method: str, url: str, kw: dict[str, Any]) -> tuple[Any, ...]:
    try:
        return _outcome(await client.request(method, url, **kw))
    except HTTPError as exc:
        return _outcome(exc)


def _twins(backend: str, overrides: dict[str, Any]) -> tuple[AsyncPerfClient, AsyncPerfClient]:
    settings: dict[str, Any] = {"retry": FAST, **overrides}
    hot = AsyncPerfClient(backend=backend, **settings)
    plain = AsyncPerfClient(backend=backend, **settings)
    plain._run = plain._run_reference  # type: ignore[method-assign]
    return hot, plain


@pytest.mark.parametrize("backend", ["aiohttp", "httpx"])
@pytest.mark.parametrize(
    ("name", "method", "path", "kw", "overrides"), SCENARIOS, ids=[s[0] for s in SCENARIOS]
)
async def test_the_hot_path_and_its_reference_twin_answer_alike(
    server: FaultServer,
    backend: str,
    name: str,
    method: str,
    path: str,
    kw: dict[str, Any],
    overrides: dict[str, Any],
) -> None:
    hot, plain = _twins(backend, overrides)
    try:
        got = []
        for client in (hot, plain):
            url = server.url + path.format(key=_key())
            got.append(await _call(client, method, url, kw))
            assert client.pool_stats()["in_use"] == 0
        assert got[0] == got[1]
        assert hot.breaker_state(server.url) == plain.breaker_state(server.url)
    finally:
        await hot.aclose()
        await plain.aclose()


@pytest.mark.parametrize("backend", ["aiohttp", "httpx"])
async def test_the_twins_stream_queue_and_cancel_alike(server: FaultServer, backend: str) -> None:
    """Streams (and their deadline), calls queued past the per-host limit, and a cancelled call."""
    hot, plain = _twins(backend, {"max_per_host": 2})
    try:
        for client in (hot, plain):
            async with client.stream("GET", f"{server.url}/stream?chunks=3") as resp:
                lines = [line async for line in resp.aiter_lines()]
            assert len(lines) == 3
            answers = await asyncio.gather(*(client.get(f"{server.url}/ok?delay=0.01") for _ in range(8)))
            assert [r.status for r in answers] == [200] * 8
            task = asyncio.create_task(client.get(f"{server.url}/slow-first-byte?delay=1"))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert client.pool_stats()["in_use"] == 0
            assert client.breaker_state(server.url) == "closed"
    finally:
        await hot.aclose()
        await plain.aclose()
