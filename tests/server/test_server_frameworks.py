"""The ASGI app (under Starlette) and the aiohttp handler serve the same endpoint inside apps."""

from __future__ import annotations

import json

import aiohttp
import httpx
import pytest
from aiohttp import web
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from starlette.applications import Starlette
from starlette.routing import Mount

from infra.metrics import MetricsRegistry
from infra.metrics.exposition import CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT
from infra.server import make_aiohttp_handler, make_asgi_app, metrics_aiohttp_handler, metrics_asgi_app


async def test_asgi_app_mounted_in_starlette_serves_text_openmetrics_json_and_checks_the_token(
    registry: MetricsRegistry,
) -> None:
    app = Starlette(routes=[Mount("/metrics", make_asgi_app(registry, token="tok"))])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as client:
        r = await client.get("/metrics/")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        auth = {"Authorization": "Bearer tok"}
        r = await client.get("/metrics/", headers=auth)
        assert r.status_code == 200 and r.headers["content-type"] == CONTENT_TYPE_TEXT
        assert 'infra_test_latency_seconds_count{op="uniform"} 1000' in r.text
        r = await client.get("/metrics/", headers={**auth, "Accept": "application/openmetrics-text"})
        assert r.headers["content-type"] == CONTENT_TYPE_OPENMETRICS
        list(parse_openmetrics(r.text))
        r = await client.get("/metrics/?format=json", headers=auth)
        assert r.json()["stats"]["cache"]["inference"]["hits"] == 4
        r = await client.post("/metrics/", headers=auth)
        assert r.status_code == 405


async def test_asgi_app_renders_large_registries_off_the_event_loop() -> None:
    """Past the inline limit the render runs in the default executor; the answer is the same."""
    reg = MetricsRegistry()
    c = reg.counter("many_total", "", ("i",))
    for i in range(200):
        c.labels(str(i)).inc()
    app = make_asgi_app(reg)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as client:
        r = await client.get("/")
    assert r.status_code == 200 and r.text.count("many_total{") == 200


def test_default_app_and_handler_exist_for_the_process_wide_registry() -> None:
    assert callable(metrics_asgi_app) and callable(metrics_aiohttp_handler)


@pytest.fixture
async def aiohttp_server_url(registry: MetricsRegistry):  # type: ignore[no-untyped-def]
    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(registry, token="tok"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        await runner.cleanup()


async def test_aiohttp_handler_serves_negotiated_formats_and_checks_the_token(
    aiohttp_server_url: str,
) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(aiohttp_server_url) as r:
            assert r.status == 401
        auth = {"Authorization": "Bearer tok"}
        async with s.get(aiohttp_server_url, headers=auth) as r:
            assert r.status == 200 and r.headers["Content-Type"] == CONTENT_TYPE_TEXT
            assert "infra_cache_hits_total" in await r.text()
        async with s.get(aiohttp_server_url, headers={**auth, "Accept": "application/openmetrics-text"}) as r:
            assert r.headers["Content-Type"] == CONTENT_TYPE_OPENMETRICS
            list(parse_openmetrics(await r.text()))
        async with s.get(aiohttp_server_url + "?format=json", headers=auth) as r:
            assert json.loads(await r.text())["stats"]["cache"]["inference"]["misses"] == 0
