"""Pool limits, leak-proofing after cancellation and unconsumed streams, and the one deadline per call."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import threading
import time
import uuid

import pytest
from http_backends import pool_empty

from infra.http import (
    AsyncPerfClient,
    BreakerConfig,
    DeadlineExceeded,
    PerfClient,
    PoolTimeout,
    RetryConfig,
    TimeoutConfig,
)
from infra.testing.fault_server import ConcurrencyGauge, ConnectionGauge, FaultServer


@pytest.fixture(scope="module")
def three_servers():
    total = ConcurrencyGauge()
    servers = [FaultServer(total_gauge=total).start() for _ in range(3)]
    yield servers, total
    for s in servers:
        s.stop()


def reset(servers, total) -> None:
    for s in servers:
        s.gauge.reset()
    total.reset()


async def test_ten_thousand_concurrent_callers_respect_per_host_and_total_limits(three_servers) -> None:
    """10k concurrent callers over three origins: no server sees more than 6 at once, all together ≤ 16."""
    servers, total = three_servers
    reset(servers, total)
    async with AsyncPerfClient() as client:
        urls = [f"{s.url}/ok?delay=0.001" for s in servers]
        results = await asyncio.gather(*(client.get(urls[i % 3]) for i in range(10_000)))
        assert all(r.status == 200 for r in results)
        assert pool_empty(client), client.pool_stats()
    peaks = [s.gauge.peak for s in servers]
    assert max(peaks) <= 6, peaks
    assert total.peak <= 16
    assert total.peak >= 7  # the limit was actually reached across origins, not a serial trickle


def test_sync_client_respects_the_same_limits(three_servers) -> None:
    """64 threads over three origins through one PerfClient: ≤ 6 per origin, ≤ 16 in all."""
    servers, total = three_servers
    reset(servers, total)
    errors: list[BaseException] = []
    with PerfClient() as client:

        def worker(i: int) -> None:
            try:
                for j in range(10):
                    assert client.get(f"{servers[(i + j) % 3].url}/ok?delay=0.002").status == 200
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert client.pool_stats()["in_use"] == 0
    assert max(s.gauge.peak for s in servers) <= 6
    assert total.peak <= 16


@pytest.fixture(scope="module")
def four_servers():
    """Four origins; ``total`` counts TCP connections open to all of them at once, idle ones included."""
    total = ConnectionGauge()
    servers = [FaultServer(total_connections=total).start() for _ in range(4)]
    yield servers, total
    for s in servers:
        s.stop()


def reset_connections(servers, total) -> None:
    for s in servers:
        s.connections.reset()
    total.reset()


@pytest.mark.pyreqwest_falls_short(
    reason="reqwest caps idle connections per host (pool_max_idle_per_host), not in all: four busy origins "
    "keep 4 x max_per_host = 24 open (each origin stays within 6)"
)
async def test_open_connections_stay_within_the_limits_idle_ones_included(make_api, four_servers) -> None:
    """800 calls over four origins, 48 at a time: the servers never see more than max_connections (16) open
    in all nor max_per_host (6) to one, idle keep-alive connections counted (aiohttp kept 24 open: its limit
    counted only connections in use)."""
    from concurrent.futures import ThreadPoolExecutor

    servers, total = four_servers
    reset_connections(servers, total)
    api = make_api()
    sem = asyncio.Semaphore(48)
    threads = ThreadPoolExecutor(48)  # the sync client's calls: asyncio's default executor has cpu + 4
    asyncio.get_running_loop().set_default_executor(threads)

    async def one(i: int) -> int:
        async with sem:
            return int((await api.get(f"{servers[i % 4].url}/ok?delay=0.002")).status)

    try:
        assert set(await asyncio.gather(*(one(i) for i in range(800)))) == {200}
    finally:
        threads.shutdown()
    assert total.open_now() <= 16
    assert total.peak <= 16, total.peak
    assert max(s.connections.peak for s in servers) <= 6, [s.connections.peak for s in servers]
    assert total.peak >= 12  # the limit was reached: not a serial trickle


# -- leaks ----------------------------------------------------------------------------------------------


def assert_pool_empty(client: AsyncPerfClient) -> None:
    assert pool_empty(client), client.pool_stats()


async def test_pool_back_to_zero_after_cancellation(three_servers) -> None:
    """Cancelling calls mid-request (slow first byte) leaves no connection in use."""
    server = three_servers[0][0]
    async with AsyncPerfClient() as client:
        tasks = [asyncio.create_task(client.get(f"{server.url}/slow-first-byte?delay=2")) for _ in range(10)]
        await asyncio.sleep(0.2)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with pytest.raises(asyncio.CancelledError):
                await t
        assert_pool_empty(client)
        assert (await client.get(f"{server.url}/ok")).status == 200  # and the client still works


async def test_pool_back_to_zero_after_double_cancel(three_servers) -> None:
    """A second cancel, landing while the first is being handled, still leaks nothing."""
    server = three_servers[0][0]
    async with AsyncPerfClient() as client:
        for delay in (0, 0.05, 0.1):
            tasks = [
                asyncio.create_task(client.get(f"{server.url}/slow-first-byte?delay=2")) for _ in range(8)
            ]
            await asyncio.sleep(delay)
            for t in tasks:
                t.cancel()
            await asyncio.sleep(0)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            assert_pool_empty(client)


async def test_pool_back_to_zero_after_cancel_in_the_pool_queue(three_servers) -> None:
    """Callers cancelled while queued for a slot leave the slots consistent."""
    server = three_servers[0][0]
    async with AsyncPerfClient() as client:
        busy = [asyncio.create_task(client.get(f"{server.url}/ok?delay=0.3")) for _ in range(6)]
        await asyncio.sleep(0.05)
        queued = [asyncio.create_task(client.get(f"{server.url}/ok")) for _ in range(20)]
        await asyncio.sleep(0.05)
        for t in queued:
            t.cancel()
        await asyncio.gather(*queued, return_exceptions=True)
        assert all(r.status == 200 for r in await asyncio.gather(*busy))
        assert_pool_empty(client)
        # all 6 per-host slots are free again: 6 slow calls run at once
        t0 = time.monotonic()
        await asyncio.gather(*(client.get(f"{server.url}/ok?delay=0.3") for _ in range(6)))
        assert time.monotonic() - t0 < 0.6 * 2


@pytest.mark.layer_only(
    reason="the timer wheel's memory: 9,994 of each round's calls never leave the slot queue (~50 s)"
)
async def test_memory_is_flat_over_rounds_of_ten_thousand_cancelled_calls(three_servers) -> None:
    """Rounds of 10,000 calls queued for a slot and then cancelled: after the first round the client holds no
    more memory (tracemalloc, the Python heap) than before the next. Each round used to keep ~0.25 MB:
    emptied timer-wheel buckets kept their 10,000-slot tables until their (up to 60 s) due time."""
    import gc
    import tracemalloc

    server = three_servers[0][0]
    url = f"{server.url}/slow-first-byte?delay=30"
    tracemalloc.start()
    try:
        async with AsyncPerfClient() as client:
            sizes = []
            for _ in range(5):
                tasks = [asyncio.create_task(client.get(url)) for _ in range(10_000)]
                await asyncio.sleep(0.1)
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                del tasks
                gc.collect()
                # What infra/http allocated and still holds: other threads of the test process (a
                # dashboard sampler, a cache writer) move the whole heap by +-0.2 MB between rounds.
                held = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*/infra/http/*")])
                sizes.append(sum(stat.size for stat in held.statistics("filename")))
                assert_pool_empty(client)
    finally:
        tracemalloc.stop()
    assert sizes[0] > 0, "the filter sees what the client allocated"
    growth = [b - a for a, b in itertools.pairwise(sizes[1:])]
    assert max(growth) < 50_000, growth  # bytes per round (a few wheel buckets' handles at most)


async def test_unconsumed_and_abandoned_streams_release_their_connection(three_servers) -> None:
    """Leaving a stream unread, or breaking out after one line, or cancelling mid-stream, leaks nothing."""
    server = three_servers[0][0]
    async with AsyncPerfClient() as client:
        for _ in range(10):
            async with client.stream("GET", f"{server.url}/stream?chunks=50&interval=0.01"):
                pass
        for _ in range(10):
            async with client.stream("GET", f"{server.url}/stream?chunks=50&interval=0.01") as r:
                async for _line in r.aiter_lines():
                    break
        assert_pool_empty(client)

        async def read_forever() -> None:
            async with client.stream("GET", f"{server.url}/stall?chunks=1&stall=5") as r:
                async for _ in r.aiter_bytes():
                    pass

        tasks = [asyncio.create_task(read_forever()) for _ in range(5)]
        await asyncio.sleep(0.2)
        for t in tasks:
            t.cancel()
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert_pool_empty(client)


def test_sync_unconsumed_streams_release_their_connection(three_servers) -> None:
    server = three_servers[0][0]
    with PerfClient() as client:
        for _ in range(10):
            with client.stream("GET", f"{server.url}/stream?chunks=50&interval=0.01"):
                pass
        for _ in range(10):
            with client.stream("GET", f"{server.url}/stream?chunks=50&interval=0.01") as r:
                for _line in r.iter_lines():
                    break
        assert client.pool_stats() == {"in_use": 0, "httpx_active": 0}


# -- the deadline ---------------------------------------------------------------------------------------


# The bound (p99 overshoot <= 10 ms) is a speed figure: bench/bench_http.py measures it (async and
# sync). These tests hold the behaviour with a loaded-box margin: every call fails at its 30 ms deadline,
# never early, and never anywhere near the 2 s the first byte would take.
DEADLINE_SLACK = 0.5


async def test_deadline_fails_each_call_at_its_deadline(external_server) -> None:
    """100 calls, 30 ms deadline, 2 s first byte: each fails at its deadline, none early."""
    server = external_server
    overshoot = []
    async with AsyncPerfClient() as client:
        for _ in range(100):
            t0 = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                await client.get(f"{server.url}/slow-first-byte?delay=2", deadline=0.03)
            overshoot.append(time.monotonic() - t0 - 0.03)
    assert min(overshoot) >= -0.001
    assert max(overshoot) <= DEADLINE_SLACK, (statistics.median(overshoot), sorted(overshoot)[-3:])


def test_sync_deadline_is_enforced_through_socket_timeouts(external_server) -> None:
    """PerfClient: 100 calls with a 30 ms deadline against a 2 s first byte all fail at about 30 ms.

    A blocked thread can only be woken by the OS (the deadline becomes the socket timeout); its p99
    overshoot is bench/bench_http.py's figure (2.4-6.1 ms on a quiet box)."""
    server = external_server
    overshoot = []
    with PerfClient() as client:
        for _ in range(100):
            t0 = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                client.get(f"{server.url}/slow-first-byte?delay=2", deadline=0.03)
            overshoot.append(time.monotonic() - t0 - 0.03)
    assert min(overshoot) >= -0.001
    assert max(overshoot) <= DEADLINE_SLACK, (statistics.median(overshoot), sorted(overshoot)[-3:])


async def test_deadline_covers_the_pool_wait(three_servers) -> None:
    """A caller queued behind 6 slow calls fails at its deadline, not when a slot frees."""
    server = three_servers[0][0]
    async with AsyncPerfClient() as client:
        busy = [asyncio.create_task(client.get(f"{server.url}/ok?delay=0.5")) for _ in range(6)]
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await client.get(f"{server.url}/ok", deadline=0.1)
        assert time.monotonic() - t0 < 0.3
        await asyncio.gather(*busy)


async def test_pool_timeout_is_its_own_error(three_servers) -> None:
    """timeout.pool shorter than the deadline: PoolTimeout, not retried."""
    server = three_servers[0][0]
    async with AsyncPerfClient(timeout=TimeoutConfig(pool=0.05), max_per_host=1) as client:
        busy = asyncio.create_task(client.get(f"{server.url}/ok?delay=0.4"))
        await asyncio.sleep(0.05)
        with pytest.raises(PoolTimeout):
            await client.get(f"{server.url}/ok")
        await busy


async def test_deadline_covers_sleeps_between_attempts(three_servers) -> None:
    """When the next backoff would end past the deadline the call fails at once, without sleeping."""
    server = three_servers[0][0]
    policy = RetryConfig(backoff=(5.0,), jitter=0)
    async with AsyncPerfClient(retry=policy, breaker=BreakerConfig(enabled=False)) as client:
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded) as info:
            await client.get(f"{server.url}/reset-before-headers/{uuid.uuid4().hex}", deadline=1.0)
        assert time.monotonic() - t0 < 0.5
        assert info.value.attempts == 1


async def test_first_byte_timeout_is_retried_for_get(three_servers) -> None:
    """No headers within timeout.first_byte counts as a read failure: retried, then raised."""
    server = three_servers[0][0]
    policy = RetryConfig(attempts=1, backoff=(0.01,))
    async with AsyncPerfClient(timeout=TimeoutConfig(first_byte=0.1), retry=policy) as client:
        before = server.hits["slow-first-byte"]
        from infra.http import TransportError

        with pytest.raises(TransportError) as info:
            await client.get(f"{server.url}/slow-first-byte?delay=1")
        assert info.value.kind == "first_byte"
        assert server.hits["slow-first-byte"] - before == 2


async def test_configured_deadline_bounds_a_stream_up_to_its_headers_only(make_api, server) -> None:
    """A stream outliving timeout.total still completes (its body runs on the idle timeout), while an
    explicit deadline= bounds the whole stream."""
    api = make_api(timeout=TimeoutConfig(total=0.3, idle=1.0))
    lines = await api.stream_lines("GET", f"{server.url}/stream?chunks=6&interval=0.1")
    assert len(lines) == 6
    with pytest.raises(DeadlineExceeded):
        await api.stream_lines("GET", f"{server.url}/stream?chunks=6&interval=0.1", deadline=0.3)


async def test_a_slot_handed_to_a_queued_call_cancelled_before_it_ran_passes_on(three_servers) -> None:
    """The client's own slot queue: a caller granted a slot and cancelled before it could run hands the slot
    to the next caller instead of leaking it."""
    server = three_servers[0][0]
    async with AsyncPerfClient(max_connections=16, max_per_host=1) as client:
        assert (await client.get(f"{server.url}/ok")).status == 200
        slots = client.host_state(server.url).slots
        slots.free -= 1  # the one per-host slot is held (as by a call in flight)
        first = asyncio.create_task(client.get(f"{server.url}/ok"))
        second = asyncio.create_task(client.get(f"{server.url}/ok"))
        await asyncio.sleep(0.01)
        assert len(slots.waiters) == 2
        slots.release()  # granted to `first` ...
        first.cancel()  # ... cancelled before it resumes
        assert (await asyncio.wait_for(second, 5)).status == 200
        with pytest.raises(asyncio.CancelledError):
            await first
        assert slots.free == 1 and not slots.waiters
        assert_pool_empty(client)


def fill_pool(client: PerfClient, servers: list[FaultServer], per_origin: int) -> None:
    """``per_origin`` calls to each server held at once, then answered: that many idle connections each."""
    key = f"fill-{uuid.uuid4().hex}"
    threads = [
        threading.Thread(target=client.get, args=(f"{s.url}/hold/{key}",), daemon=True)
        for s in servers
        for _ in range(per_origin)
    ]
    for t in threads:
        t.start()
    end = time.monotonic() + 30
    while sum(s.hits[f"hold/{key}"] for s in servers) < len(threads) and time.monotonic() < end:
        time.sleep(0.005)
    for s in servers:
        s.release(key)
    for t in threads:
        t.join(30)
    assert client.pool_stats()["in_use"] == 0


def test_sync_client_reuses_its_own_origins_connections_instead_of_churning(
    four_servers, monkeypatch
) -> None:
    """Issue 17: with the pool full of idle connections (4 per origin), 6 calls for one origin used to
    close 2 idle connections of other origins and open 2 new ones; 8 such rounds opened 40 connections.
    Now the 5th and 6th wait for one of their origin's 4 busy connections: 16 opened in all.

    Ordered by the server (``/hold`` answers only when the test releases it), not by timing: a round is
    released once the server holds the 6 calls, or holds 4 and the client has all 6 in its slots."""
    from infra.http import _affinity

    # The wait is capped at ~one reconnect's cost (TURN_WAIT_S, tested below); here the test decides when
    # the held calls end, so the cap is lifted to keep the order the test's alone.
    monkeypatch.setattr(_affinity, "TURN_WAIT_S", 60.0)
    servers, total = four_servers
    reset_connections(servers, total)
    done = threading.Semaphore(0)
    errors: list[BaseException] = []

    def call(client: PerfClient, url: str) -> None:
        try:
            assert client.get(url).status == 200
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.release()

    def held(server: FaultServer, key: str) -> int:
        return server.hits[f"hold/{key}"]

    def wait_until(check, seconds: float) -> bool:
        end = time.monotonic() + seconds
        while not check():
            if time.monotonic() > end:
                return False
            time.sleep(0.005)
        return True

    with PerfClient(retry=RetryConfig(attempts=0)) as client:

        def run(calls: list[tuple[FaultServer, str]], ready) -> None:
            for server, key in calls:
                threading.Thread(target=call, args=(client, f"{server.url}/hold/{key}"), daemon=True).start()
            assert wait_until(ready, 30), [held(s, k) for s, k in calls]
            for key in {k for _, k in calls}:
                for server in servers:
                    server.release(key)
            for _ in calls:
                assert done.acquire(timeout=30)
            assert wait_until(lambda: client.pool_stats()["in_use"] == 0, 30)

        fill = f"fill-{uuid.uuid4().hex}"  # 16 calls held at once: 4 idle connections per origin after
        run([(s, fill) for s in servers for _ in range(4)], lambda: sum(held(s, fill) for s in servers) == 16)
        assert total.opened == 16 and total.open_now() == 16
        for r in range(8):
            server, key = servers[r % 4], f"round-{r}-{uuid.uuid4().hex}"

            def ready(server=server, key=key) -> bool:
                # the fixed client holds 4 at the server and 2 in its slots (waiting for those 4); the
                # churning one sends all 6 (a short grace for them to arrive once the 4 are there)
                return held(server, key) == 6 or (
                    held(server, key) == 4
                    and client.pool_stats()["in_use"] == 6
                    and not wait_until(lambda: held(server, key) > 4, 0.3)
                )

            run([(server, key)] * 6, ready)
    assert not errors
    assert total.peak <= 16
    # 16 opened by the fill; every round may reconnect once or twice at most (a keep-alive race), far
    # below the 2 per round of the churning pool
    assert total.opened <= 20, total.opened


def test_sync_client_waits_for_its_origin_only_briefly_then_reconnects(four_servers) -> None:
    """A call whose origin's connections are all held (streams, slow calls) doesn't wait for them past
    TURN_WAIT_S, even with a long pool timeout (30 s): it closes another origin's idle connection and goes."""
    from infra.http import _affinity

    servers, total = four_servers
    reset_connections(servers, total)
    key = f"busy-{uuid.uuid4().hex}"
    with PerfClient(retry=RetryConfig(attempts=0), timeout=TimeoutConfig(pool=30.0, total=30.0)) as client:
        fill_pool(client, servers, 4)
        assert total.opened == 16
        held = [
            threading.Thread(target=client.get, args=(f"{servers[0].url}/hold/{key}",), daemon=True)
            for _ in range(4)
        ]
        for t in held:
            t.start()
        end = time.monotonic() + 30
        while servers[0].hits[f"hold/{key}"] < 4 and time.monotonic() < end:
            time.sleep(0.005)
        try:
            started = time.monotonic()
            assert client.get(f"{servers[0].url}/ok").status == 200  # a 5th call while the 4 are held
            waited = time.monotonic() - started
        finally:
            servers[0].release(key)
            for t in held:
                t.join(30)
    assert total.opened == 17  # it opened one (closing another origin's idle one)...
    assert total.peak <= 16
    assert waited < 100 * _affinity.TURN_WAIT_S  # ...after ~TURN_WAIT_S, not the 30 s pool timeout
