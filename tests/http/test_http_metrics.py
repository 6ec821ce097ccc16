"""Metrics per origin, and no secret (query-string API key, Authorization, userinfo) in /metrics or logs."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid

import pytest

from infra.http import AsyncPerfClient, BreakerConfig, HTTPError, PerfClient, RetryConfig
from infra.metrics import get_metrics

SECRET = "sk-live-" + uuid.uuid4().hex
TOKEN = "tok-" + uuid.uuid4().hex


def rendered() -> str:
    from infra.metrics.exposition import render_text

    return render_text(get_metrics())


def label_values() -> set[str]:
    values: set[str] = set()
    for metric in get_metrics().collect():
        for key in getattr(metric, "_children", {}) or {}:
            values.update(str(v) for v in (key if isinstance(key, tuple) else (key,)))
    return values


async def test_metrics_are_per_origin_and_count_retries(server) -> None:
    """Duration by origin / method / status class, and retries by reason, land in the registry."""
    async with AsyncPerfClient(retry=RetryConfig(backoff=(0.001,))) as client:
        await client.get(f"{server.url}/fail/{uuid.uuid4().hex}?n=1&code=503&retry_after=0")
        async with client.stream("GET", f"{server.url}/stream") as s:
            await s.aread()
    text = rendered()
    origin = server.origin
    assert f'infra_http_request_duration_seconds_count{{origin="{origin}",method="GET",code="2xx"}}' in text
    assert f'infra_http_retries_total{{origin="{origin}",reason="503"}}' in text
    assert f'infra_http_time_to_first_byte_seconds_count{{origin="{origin}",method="GET"}}' in text
    assert 'infra_http_active_connections{origin="' + origin + '"} 0' in text


async def test_breaker_transitions_are_counted() -> None:
    from infra.testing.fault_server import FaultServer

    with FaultServer() as srv:
        async with AsyncPerfClient(
            retry=RetryConfig(attempts=0), breaker=BreakerConfig(consecutive_failures=1)
        ) as c:
            await c.get(f"{srv.url}/status/500")
    text = rendered()
    assert f'infra_http_breaker_transitions_total{{origin="{srv.origin}",state="open"}} 1' in text
    assert f'infra_http_breaker_state{{origin="{srv.origin}"}} 2' in text


async def test_no_secret_in_metrics_or_logs(server, caplog: pytest.LogCaptureFixture) -> None:
    """An API key in the query, a bearer token and URL userinfo never reach a label, /metrics or a log."""
    caplog.set_level(logging.DEBUG)
    host = server.url.split("://", 1)[1]
    urls = [
        f"{server.url}/ok?api_key={SECRET}",
        f"http://user:{SECRET}@{host}/ok",
        f"{server.url}/status/503?key={SECRET}",
        f"{server.url}/reset-before-headers/{SECRET}",
    ]
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Api-Key": TOKEN}
    messages: list[str] = []
    async with AsyncPerfClient(retry=RetryConfig(backoff=(0.001,))) as client:
        for url in urls:
            try:
                await client.get(url, headers=headers)
            except (HTTPError, ValueError) as exc:  # aiohttp refuses userinfo + Authorization: ValueError
                messages.append(str(exc))
    with PerfClient(retry=RetryConfig(backoff=(0.001,))) as sync_client:
        for url in urls:
            try:
                sync_client.get(url, headers=headers)
            except (HTTPError, ValueError) as exc:  # aiohttp refuses userinfo + Authorization: ValueError
                messages.append(str(exc))
    text = rendered()
    assert "infra_http_request_duration_seconds" in text
    for secret in (SECRET, TOKEN):
        assert secret not in text
        assert not any(secret in v for v in label_values())
        assert secret not in caplog.text
        assert not any(secret in m for m in messages)
    assert all("://" in v and v.count("/") == 2 for v in label_values() if v.startswith("http"))


def test_import_is_lazy() -> None:
    """``import infra.http`` loads neither aiohttp nor httpx (nor the clients)."""
    code = (
        "import sys, infra.http, infra.testing\n"
        "bad = [m for m in ('aiohttp', 'httpx', 'h2', 'infra.http._async_client') if m in sys.modules]\n"
        "print(bad)\n"
        "from infra.http import AsyncPerfClient\n"
        "assert 'aiohttp' in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_all_matches_public_names() -> None:
    """infra.http's __all__ lists every public name, and each resolves."""
    import infra.http as mod

    for name in mod.__all__:
        assert getattr(mod, name) is not None
    machinery = {"annotations", "TYPE_CHECKING", "Any", "lazy_exports"}  # the front door's, not API
    public = {n for n in vars(mod) if not n.startswith("_")} - machinery
    assert public <= set(mod.__all__) | {"AsyncPerfClient", "PerfClient"}
