"""Every count a user can read (get_stats(), /metrics, a call's history) equals what happened on the wire.

Each test runs its own FaultServer (its own origin), so the process-wide registry's series for that origin
hold this test's calls alone, and the server's ``hits`` say what really arrived.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from infra.http import (
    AsyncPerfClient,
    BreakerConfig,
    CircuitOpenError,
    RetryBudgetConfig,
    RetryConfig,
)
from infra.metrics import get_metrics
from infra.server._dashboard_source import ColumnSampler
from infra.testing.fault_server import FaultServer

NO_BUDGET = RetryBudgetConfig(enabled=False)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def series(name: str, **labels: str) -> float:
    """The sum of /metrics samples ``name`` whose labels include ``labels`` (0 when there are none)."""
    from infra.metrics.exposition import render_text

    total = 0.0
    for line in render_text(get_metrics()).splitlines():
        if not line.startswith(name + "{"):
            continue
        head, value = line.rsplit(" ", 1)
        found = dict(_LABEL.findall(head))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def calls(origin: str, code: str) -> float:
    """Calls to ``origin`` counted with ``code`` in the duration histogram."""
    return series("infra_http_request_duration_seconds_count", origin=origin, code=code)


def row(origin: str, method: str = "GET") -> dict[str, Any]:
    return dict(get_metrics().get_stats().get(f"http {method} {origin}") or {"count": 0, "errors": 0})


async def _until(predicate: Any, what: str) -> None:
    """Poll (10 s at most) until ``predicate()``: orders a test by state, not by sleeps."""
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# -- 1. a retry is counted when it is sent ---------------------------------------------------------------


async def test_retries_total_equals_the_retries_the_server_received() -> None:
    """10 concurrent GETs to an always-503 route, default breaker (opens after 5 failed calls) and budget:
    some scheduled retries are cancelled when the breaker opens during their backoff. The counter, the
    histories and the server agree (the counter used to count 10 against the server's 5)."""
    with FaultServer() as server:
        async with AsyncPerfClient() as client:
            results = await asyncio.gather(
                *(client.get(f"{server.url}/status/503") for _ in range(10)), return_exceptions=True
            )
        received = server.hits["status/503"]
        assert sum(len(r.history) for r in results) == received  # a Response's or an HTTPError's
        assert series("infra_http_retries_total", origin=server.origin) == received - 10


async def test_a_retry_the_breaker_cancels_during_its_backoff_is_not_counted(make_api) -> None:
    """Call A got a 503 and sleeps 1.5 s before its retry; B's 500 opens the breaker meanwhile: A's retry
    is never sent, so it is not in infra_http_retries_total (it was counted when scheduled)."""
    with FaultServer() as server:
        slow = RetryConfig(backoff=(1.5,), jitter=0)
        api = make_api(retry=slow, breaker=BreakerConfig(consecutive_failures=1), retry_budget=NO_BUDGET)
        a = asyncio.create_task(api.get(f"{server.url}/status/503"))
        await _until(lambda: server.hits["status/503"] == 1, "call A's first try")
        assert (await api.get(f"{server.url}/status/500", deadline=0.5)).status == 500
        assert (await a).status == 503
        assert server.hits["status/503"] == 1
        assert series("infra_http_retries_total", origin=server.origin) == 0


@pytest.mark.parametrize("backend", ["aiohttp", "httpx"])
async def test_a_call_cancelled_in_its_backoff_gives_its_retry_token_back(backend: str) -> None:
    """A call cancelled while it sleeps before a retry: the retry is not counted, the budget token it took
    comes back (ratio 1: one call earns exactly one retry), and the call is counted as cancelled."""
    with FaultServer() as server:
        budget = RetryBudgetConfig(ratio=1.0, per_second=0.0)
        async with AsyncPerfClient(
            retry=RetryConfig(backoff=(30.0,), jitter=0), retry_budget=budget, backend=backend
        ) as client:
            url = f"{server.url}/status/503"
            state = client.host_state(url)
            task = asyncio.create_task(client.get(url))
            await _until(lambda: server.hits["status/503"] == 1, "the first try")
            await _until(lambda: state.budget.balance == 0, "the retry's token to be taken")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert state.budget.balance == 1
        assert series("infra_http_retries_total", origin=server.origin) == 0
        assert calls(server.origin, "cancelled") == 1


class _Interrupted(BaseException):
    """What the test's signal handler raises in the main thread, as Ctrl-C's KeyboardInterrupt would."""


def test_a_sync_call_interrupted_in_its_backoff_gives_its_retry_token_back() -> None:
    """PerfClient: a KeyboardInterrupt-like exception while the call sleeps before its retry (delivered
    to the main thread by a signal, as Ctrl-C is): the budget token comes back, the call is counted as
    cancelled, no retry is counted. The sync client's sleep used to skip the release."""
    import signal
    import threading
    import time

    from infra.http import PerfClient

    def interrupt(*_: object) -> None:
        raise _Interrupted

    old = signal.signal(signal.SIGUSR1, interrupt)
    main = threading.main_thread().ident
    assert main is not None and threading.get_ident() == main
    try:
        with FaultServer() as server:
            budget = RetryBudgetConfig(ratio=1.0, per_second=0.0)
            with PerfClient(retry=RetryConfig(backoff=(30.0,), jitter=0), retry_budget=budget) as client:
                url = f"{server.url}/status/503"
                state = client.host_state(url)

                def when_sleeping() -> None:
                    for _ in range(1000):  # 10 s at most: the first try answered, the retry's token taken
                        if server.hits["status/503"] == 1 and state.budget.balance == 0:
                            signal.pthread_kill(main, signal.SIGUSR1)
                            return
                        time.sleep(0.01)

                killer = threading.Thread(target=when_sleeping)
                killer.start()
                with pytest.raises(_Interrupted):
                    client.get(url)
                killer.join()
                assert state.budget.balance == 1
            assert series("infra_http_retries_total", origin=server.origin) == 0
            assert calls(server.origin, "cancelled") == 1
    finally:
        signal.signal(signal.SIGUSR1, old)


# -- 2. a call the breaker refuses is counted, and sent nothing -----------------------------------------


async def test_a_refused_call_is_counted_and_its_history_is_empty(make_api) -> None:
    """The breaker opens on one failed call; three calls are then refused: each raises CircuitOpenError
    with an empty history (no try was sent), and each is counted, as an error, code "refused", in
    get_stats() and in the dashboard's columns."""
    with FaultServer() as server:
        refuse = BreakerConfig(consecutive_failures=1, cooldown=60)
        api = make_api(retry=RetryConfig(attempts=0), breaker=refuse)
        assert (await api.get(f"{server.url}/status/500")).status == 500
        for _ in range(3):
            with pytest.raises(CircuitOpenError) as info:
                await api.get(f"{server.url}/status/500")
            assert info.value.history == () and info.value.attempts == 0
        assert server.hits["status/500"] == 1
        assert calls(server.origin, "refused") == 3
        stats = row(server.origin)
        assert (stats["count"], stats["errors"]) == (4, 4)
        columns = ColumnSampler(get_metrics())()  # the dashboard's calls and errors show the outage
        assert columns is not None
        key = f"http|GET {server.origin}"
        assert (columns[f"calls|{key}"], columns[f"errors|{key}"]) == (4, 4)


# -- 3. a cancelled call is counted, and still cancelled ------------------------------------------------


@pytest.mark.parametrize("backend", ["aiohttp", "httpx"])
async def test_cancelled_calls_are_counted_with_their_duration(backend: str) -> None:
    """Three calls in asyncio.wait_for(..., 0.3) against a route that answers in 30 s: each caller gets
    TimeoutError (the CancelledError went through), and get_stats counts three calls of at least 0.3 s,
    not errors; /metrics has them under code="cancelled"."""
    with FaultServer() as server:
        async with AsyncPerfClient(retry=RetryConfig(attempts=0), backend=backend) as client:
            for _ in range(3):
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(client.get(f"{server.url}/status/200?delay=30"), 0.3)
        stats = row(server.origin)
        assert (stats["count"], stats["errors"]) == (3, 0)
        assert stats["min_ms"] >= 290  # a timer may fire a clock tick early; never 10x
        assert calls(server.origin, "cancelled") == 3


# -- 4. and 5. the off switch: no failure a plain aiohttp session would not have ---------------------


async def _one_answer_per_connection() -> tuple[asyncio.Server, dict[str, int]]:
    """A raw HTTP/1.1 server that answers the first request on each keep-alive connection and closes the
    connection on the second without answering (a keep-alive timeout racing a reused connection)."""
    seen = {"requests": 0, "open": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = 0
        seen["open"] += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                n += 1
                seen["requests"] += 1
                if n >= 2:
                    break
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=60\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        seen["open"] -= 1
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), seen


async def _handlers_done(seen: dict[str, int]) -> None:
    """Until the server's handlers have seen the client's connections close: a native backend closes its
    sockets on its own runtime thread, a few loop turns after ``aclose`` returns (aiohttp's, before)."""
    for _ in range(1000):
        if not seen["open"]:
            return
        await asyncio.sleep(0.001)


async def test_off_survives_a_dropped_keepalive_connection_like_plain_aiohttp() -> None:
    """enabled: false, three GETs in a row over connections the server drops after one answer: all 200,
    as with a plain aiohttp session (it resends an idempotent request once on a reused connection the
    server closed); the off client used to raise TransportError on the second."""
    import aiohttp

    server, seen = await _one_answer_per_connection()
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x"
    try:
        async with aiohttp.ClientSession() as plain:
            statuses = []
            for _ in range(3):
                async with plain.get(url) as r:
                    statuses.append(r.status)
            assert statuses == [200, 200, 200]  # what the off client must match
        assert seen["requests"] == 5  # 3 answered, 2 dropped and resent once
        async with AsyncPerfClient(enabled=False) as client:
            assert [(await client.get(url)).status for _ in range(3)] == [200, 200, 200]
        assert seen["requests"] == 10  # the same tries as the plain session
        await _handlers_done(seen)
    finally:
        server.close()
        await server.wait_closed()


async def test_off_queues_no_call_behind_the_layers_connection_limits() -> None:
    """enabled: false with 6 streams held open to one host: a 7th call is answered at once, as a plain
    aiohttp session (no per-host limit) answers it; the off client used to keep the layer's 6 per host
    and raise PoolTimeout after 10 s."""
    with FaultServer() as server:
        async with AsyncPerfClient(enabled=False) as client:
            streams = [client.stream("GET", f"{server.url}/stall?stall=30") for _ in range(6)]
            for s in streams:
                await s.__aenter__()
            try:
                assert (await client.get(f"{server.url}/ok")).status == 200
            finally:
                for s in streams:
                    await s.__aexit__(None, None, None)


def test_off_takes_the_plain_clients_limits_where_the_layers_defaults_stood() -> None:
    """What ``enabled: false`` runs with: aiohttp's limits and timeouts in place of the layer's defaults,
    a value the user set kept, one try per call."""
    from infra.http import HttpConfig, TimeoutConfig

    off = HttpConfig(enabled=False).effective()
    assert (off.max_connections, off.max_per_host, off.retry.attempts) == (100, 100, 0)
    assert off.keepalive_expiry == 15.0  # aiohttp's keepalive_timeout (the layer's is 30 s)
    assert HttpConfig(enabled=False, keepalive_expiry=60.0).effective().keepalive_expiry == 60.0
    t = off.timeout
    assert (t.total, t.connect, t.pool, t.first_byte, t.idle) == (300.0, 30.0, 300.0, 300.0, 300.0)
    assert not (off.breaker.enabled or off.retry_budget.enabled or off.metrics or off.cache.enabled)
    mine = HttpConfig(enabled=False, max_per_host=2, timeout=TimeoutConfig(total=5.0, first_byte=1.0))
    kept = mine.effective()
    assert (kept.max_connections, kept.max_per_host) == (100, 2)
    assert (kept.timeout.total, kept.timeout.first_byte, kept.timeout.pool) == (5.0, 1.0, 5.0)
    on = HttpConfig()
    assert on.effective() is on


def test_off_connector_caches_dns_as_long_as_aiohttps_default() -> None:
    """The off client's connector caches DNS answers as long as a plain ``aiohttp.TCPConnector()`` (10 s),
    the layer's 300 s; its idle keep-alive time is ``keepalive_expiry``, 15 s off (the test above)."""
    import inspect

    import aiohttp

    from infra.http._aiohttp_pool import connector_options

    plain = inspect.signature(aiohttp.TCPConnector).parameters["ttl_dns_cache"].default
    off = connector_options(100, 100, 15.0, None, resend=True)
    assert (off["ttl_dns_cache"], off["keepalive_timeout"]) == (plain, 15.0)
    assert connector_options(16, 6, 30.0, None, resend=False)["ttl_dns_cache"] == 300
