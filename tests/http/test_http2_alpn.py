"""A TLS origin listed in ``http2_hosts`` that declines HTTP/2 (ALPN gives http/1.1) keeps HTTP/1.1's limits.

Over TLS, HTTP/2 is only offered: a server that declines answers over HTTP/1.1, and the HTTP/2 carrier then
opens a connection per call in flight (pyreqwest's up to 100, httpx + h2's up to 16). Before the fix such an
origin had its HTTP/2 gate of ``http2_max_streams`` and no slot of ``max_connections``: 40 calls were 40
connections (pyreqwest) or 16 (httpx) at the server. The server here is hypercorn over TLS offering only
http/1.1 (or h2 too, for the HTTP/2 side), with ``Holding``: each request waits until one more than the
limit under test is in flight (which a client that keeps the limit never reaches: it waits out a short
patience) so what the server records -- the most requests at once, the connections -- is what the client
really had in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from http_h2_servers import Holding, HypercornH2C, self_signed_cert, threaded_gets

from infra.http import AsyncPerfClient, PerfClient
from infra.http._lease import HTTPX_MAX_STREAMS, AsyncGate
from infra.http._routing import build_settings

pytest.importorskip("h2")
pytest.importorskip("hypercorn")
pytest.importorskip("cryptography")

pytestmark = pytest.mark.each_backend  # each test names its carrier (http2_backend) itself

CALLS = 40
CARRIERS = ("pyreqwest", "httpx")


def _server(tmp: Any, alpn: list[str], patience: float) -> Iterator[tuple[Holding, str, str]]:
    certfile, keyfile, cafile = self_signed_cert(str(tmp))
    app = Holding(patience=patience)
    with HypercornH2C(certfile, keyfile, app=app, alpn=alpn) as srv:
        yield app, srv.url, cafile


@pytest.fixture(scope="module")
def http11_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Holding, str, str]]:
    """TLS, ALPN http/1.1 only: a server that declines HTTP/2."""
    # a client that keeps the limit waits out the patience once a round: short
    yield from _server(tmp_path_factory.mktemp("h1"), ["http/1.1"], 0.2)


@pytest.fixture(scope="module")
def h2_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Holding, str, str]]:
    """TLS, ALPN h2 then http/1.1: a server that speaks HTTP/2."""
    yield from _server(tmp_path_factory.mktemp("h2"), ["h2", "http/1.1"], 1.0)


def hostport(url: str) -> str:
    return url.split("//", 1)[1]


async def _park(client: AsyncPerfClient, server: Any, key: str, n: int) -> list[asyncio.Task[Any]]:
    """``n`` calls to ``server``'s /hold/{key}, each holding a connection (a global slot) until released;
    returned once all have reached the server."""
    parked = [asyncio.create_task(client.get(f"{server.url}/hold/{key}")) for _ in range(n)]
    for _ in range(3000):  # until they all reached the server (at most ~30 s)
        if server.hits[f"hold/{key}"] >= n:
            return parked
        await asyncio.sleep(0.01)
    raise AssertionError(server.hits)


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize(("max_per_host", "parked"), [(5, 0), (6, 6)])
async def test_a_tls_origin_that_declines_http2_keeps_http11_limits(
    http11_tls: Any,
    server: Any,
    carrier: str,
    max_per_host: int,
    parked: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """40 calls at once, from cold, to a listed host that answers over HTTP/1.1: never more than
    ``max_per_host`` in flight or connections at the server, nor than ``max_connections`` (10) less the
    connections another origin holds (``parked``). Before the fix the server saw limit + 1 at once on both
    carriers (all 40 on pyreqwest). Counted in pool_stats, and logged once at INFO naming the origin only."""
    app, url, ca = http11_tls
    app.reset()
    limit = min(max_per_host, 10 - parked)
    caplog.set_level(logging.INFO, logger="infra.http")
    limits = {"max_per_host": max_per_host, "max_connections": 10}
    async with AsyncPerfClient(http2_hosts=[hostport(url)], http2_backend=carrier, verify=ca, **limits) as c:
        key = f"alpn-{carrier}-{max_per_host}"
        held = await _park(c, server, key, parked)
        # each call waits at the server for limit + 1 in flight, which it must never see
        rs = await asyncio.gather(*(c.get(f"{url}/hold?n={limit + 1}&token=secret") for _ in range(CALLS)))
        assert [r.status for r in rs] == [200] * CALLS
        assert {r.http_version for r in rs} == {"HTTP/1.1"}
        # at most: under load a call may wait out its patience before the limit's last one arrives
        assert app.peak <= limit, app.peak
        assert len(app.ports) <= limit, app.ports
        assert (await c.get(f"{url}/hold?n=1")).status == 200  # and so it stays
        server.release(key)
        assert [r.status for r in await asyncio.gather(*held)] == [200] * parked
        stats = c.pool_stats()
        assert stats["http2_declined"] == 1 and stats["in_use"] == 0, stats
    said = [r.getMessage() for r in caplog.records if "listed for HTTP/2" in r.getMessage()]
    assert len(said) == 1, said
    assert url.split("://")[1] in said[0] and "/hold" not in said[0] and "secret" not in said[0], said


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_a_tls_http2_origin_still_gets_its_streams(h2_tls: Any, carrier: str) -> None:
    """A listed host that does speak HTTP/2 over TLS: after its first answer, 40 calls run at once over one
    connection (16 over httpx + h2: HTTPX_MAX_STREAMS), beyond max_per_host and max_connections; calls
    queued while its version was still unknown go on as streams too."""
    app, url, ca = h2_tls
    want = CALLS if carrier == "pyreqwest" else HTTPX_MAX_STREAMS
    async with AsyncPerfClient(
        http2_hosts=[hostport(url)], http2_backend=carrier, verify=ca, max_connections=8
    ) as client:
        app.reset()
        # from cold: 6 calls go (HTTP/1.1's limit) and wait out the patience, as no more come until the
        # first answer says HTTP/2; then the 34 queued go at once, past max_connections
        cold = min(want, CALLS - 6)
        rs = await asyncio.gather(*(client.get(f"{url}/hold?n={cold}") for _ in range(CALLS)))
        assert [r.status for r in rs] == [200] * CALLS and {r.http_version for r in rs} == {"HTTP/2"}
        assert app.peak >= cold, app.peak
        app.reset()
        rs = await asyncio.gather(*(client.get(f"{url}/hold?n={want}") for _ in range(CALLS)))
        assert [r.status for r in rs] == [200] * CALLS
        assert app.peak == want, app.peak
        assert len(app.ports) == 1, app.ports
        stats = client.pool_stats()
        assert "http2_declined" not in stats and stats["in_use"] == 0, stats


def test_the_sync_client_keeps_http11_limits_against_a_server_that_declines_http2(http11_tls: Any) -> None:
    """PerfClient holds every HTTP/2 origin to HTTP/1.1's limits already (_lease.host_gates): so too one that
    answers over HTTP/1.1."""
    app, url, ca = http11_tls
    app.reset()
    with PerfClient(http2_hosts=[hostport(url)], verify=ca) as client:
        assert threaded_gets(client, f"{url}/hold?n=7", 18) == [200] * 18
        assert app.peak == 6, app.peak


async def test_an_origin_that_spoke_http2_and_then_answers_over_http11_goes_back_to_http11_gates() -> None:
    """A fleet behind one name may answer a later call over HTTP/1.1: from then on the origin is held to
    HTTP/1.1's gates. The calls in flight finish; no new one starts until fewer than max_per_host are."""
    from infra.http._alpn import Stats, async_host  # here: the other tests run on the code before it too

    settings = build_settings(None, {"http2_hosts": ["api.example"]})
    everyone, stats = AsyncGate(settings.max_connections), Stats()
    host = async_host(settings, "https://api.example:443", everyone, stats)
    assert (host.slots.size, host.shared) == (settings.max_per_host, everyone)  # unknown yet: HTTP/1.1's
    host.alpn.seen(host, "HTTP/2")
    assert host.slots.size == settings.http2_max_streams and host.shared is not everyone
    host.slots.free -= 40  # 40 streams in flight
    host.alpn.seen(host, "HTTP/1.1")
    assert host.alpn is None and host.shared is everyone and stats.http2_declined == 1
    assert (host.slots.size, host.slots.free) == (6, 6 - 40)
    waiter = asyncio.get_running_loop().create_future()
    host.slots.waiters.append(waiter)
    for _ in range(34):  # 34 of the 40 end: 6 still in flight, so the queued call still waits
        host.slots.release()
    assert not waiter.done() and host.slots.free == 0
    host.slots.release()
    assert waiter.done() and host.slots.free == 0
