"""An HTTP/2 origin multiplexes: ``http2_max_streams`` calls at once over one connection, not
``max_per_host`` (which counts connections, as aiohttp's and httpx's limits do).

The server is hypercorn over h2c with an app that holds each request until as many as the test asks for
are in flight at once (or a patience runs out), so what it records -- the most requests it held at once
and the connections they came on -- is what the client really had in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from http_h2_servers import Holding, HypercornH2C, threaded_gets

from infra.http import AsyncPerfClient, PerfClient
from infra.http._lease import HTTPX_MAX_STREAMS

pytest.importorskip("h2")
pytest.importorskip("hypercorn")

CALLS = 40  # well above max_per_host (6) and max_connections (16), below http2_max_streams (100)


def at_once(client: AsyncPerfClient) -> int:
    """How many of CALLS the client's HTTP/2 carrier runs at once: all over pyreqwest, HTTPX_MAX_STREAMS
    over httpx + h2 (see _lease.host_gates)."""
    return CALLS if "reqwest_active" in client.pool_stats() else HTTPX_MAX_STREAMS


@pytest.fixture(scope="module")
def holding() -> Iterator[tuple[Holding, str]]:
    app = Holding()
    with HypercornH2C(app=app) as srv:
        yield app, srv.url


def hostport(url: str) -> str:
    return url.split("//", 1)[1]


async def test_an_http2_origin_runs_many_calls_at_once_over_one_connection(holding) -> None:
    """40 calls to a host in ``http2_hosts`` are all in flight at the server at once, on one connection,
    under the default limits (16 connections, 6 per host): on HTTP/1.1 those would allow 6. (Over httpx +
    h2, the pure-Python carrier, 16 of them: HTTPX_MAX_STREAMS.)"""
    app, url = holding
    async with AsyncPerfClient(http2_hosts=[hostport(url)]) as client:
        assert client.settings.max_per_host == 6 and client.settings.http2_max_streams == 100
        assert (await client.get(f"{url}/hold?n=1")).status == 200  # the connection, made once
        app.reset()
        want = at_once(client)
        rs = await asyncio.gather(*(client.get(f"{url}/hold?n={want}") for _ in range(CALLS)))
        assert [r.status for r in rs] == [200] * CALLS
        assert all(r.http_version == "HTTP/2" for r in rs)
        assert app.peak == want, app.peak
        assert len(app.ports) == 1, app.ports
        assert client.pool_stats()["in_use"] == 0


async def test_http2_max_streams_caps_the_calls_in_flight_to_one_origin(holding) -> None:
    """``http2_max_streams=8``: never more than 8 of 40 calls at the server at once, and all 40 answered."""
    app, url = holding
    async with AsyncPerfClient(http2_hosts=[hostport(url)], http2_max_streams=8) as client:
        await client.get(f"{url}/hold?n=1")
        app.reset()
        rs = await asyncio.gather(*(client.get(f"{url}/hold?n=8") for _ in range(CALLS)))
        assert [r.status for r in rs] == [200] * CALLS
        assert app.peak == 8, app.peak


async def test_http2_calls_take_no_slot_of_max_connections(holding, server) -> None:
    """While 40 HTTP/2 calls are held at their server, an HTTP/1.1 origin still gets its 6 connections at
    once (``max_connections=8``: had the streams taken global slots, HTTP/1.1 calls would queue)."""
    app, url = holding
    async with AsyncPerfClient(http2_hosts=[hostport(url)], max_connections=8) as client:
        await client.get(f"{url}/hold?n=1")
        app.reset()
        app.released.clear()
        want = at_once(client)
        held = [asyncio.create_task(client.get(f"{url}/park")) for _ in range(CALLS)]
        try:
            for _ in range(3000):  # until as many as run at once reached the server (at most ~30 s)
                if app.inflight >= want:
                    break
                await asyncio.sleep(0.01)
            assert app.inflight == want, app.inflight
            rs = await asyncio.gather(*(client.get(f"{server.url}/ok") for _ in range(6)))
            assert [r.status for r in rs] == [200] * 6
            assert app.inflight == want  # the HTTP/1.1 calls ran while every stream was still held
        finally:
            app.released.set()
        assert [r.status for r in await asyncio.gather(*held)] == [200] * CALLS


def test_the_sync_client_keeps_http11_limits_on_http2(holding) -> None:
    """PerfClient (httpx's sync HTTP/2, one thread a call) holds an HTTP/2 origin to ``max_per_host`` at
    once, as before (see _lease.host_gates: httpcore's sync HTTP/2 failed under 16 threads' streams)."""
    app, url = holding
    with PerfClient(http2_hosts=[hostport(url)]) as client:
        client.get(f"{url}/hold?n=1")
        app.reset()
        assert threaded_gets(client, f"{url}/hold?n=6", 18) == [200] * 18
        assert app.peak == 6, app.peak
        assert len(app.ports) == 1, app.ports
