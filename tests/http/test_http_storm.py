"""Storm protection against a real failing server: the retry budget and the circuit breaker."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from infra.http import (
    AsyncPerfClient,
    BreakerSettings,
    BudgetSettings,
    CircuitOpenError,
    PerfClient,
    RetryBudgetExhausted,
    RetryPolicy,
)
from infra.testing.fault_server import FaultServer

FAST = RetryPolicy(backoff=(0.001, 0.001, 0.001), jitter=0)
NO_BREAKER = BreakerSettings(enabled=False)


@pytest.mark.parametrize("per_second", [0.0, 10.0])
async def test_budget_caps_attempts_under_total_failure(
    make_api, server: FaultServer, per_second: float
) -> None:
    """Every request fails (503): the server sees at most 1.2x the requests, plus the reserve, not 4x."""
    api = make_api(retry=FAST, breaker=NO_BREAKER, budget=BudgetSettings(ratio=0.2, per_second=per_second))
    n = 500
    code = 503
    before = server.hits[f"status/{code}"]
    t0 = time.monotonic()
    sem = asyncio.Semaphore(20)

    async def one() -> int:
        async with sem:
            return (await api.get(f"{server.url}/status/{code}")).status

    statuses = await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.monotonic() - t0
    assert set(statuses) == {code}
    attempts = server.hits[f"status/{code}"] - before
    # the reserve: one second's worth to start, plus per_second for every second the run took
    reserve = per_second * (1 + elapsed)
    assert attempts <= 1.2 * n + reserve + 1, (attempts, elapsed)
    assert attempts >= n  # every request went out once
    assert api.client.host_state(server.url).budget.denied > 0


async def test_budget_denial_of_a_transport_retry_raises(server: FaultServer) -> None:
    """When the budget refuses a retry after a transport error, RetryBudgetExhausted says so."""
    budget = BudgetSettings(ratio=0.0, per_second=0.0)
    async with AsyncPerfClient(retry=FAST, breaker=NO_BREAKER, budget=budget) as client:
        with pytest.raises(RetryBudgetExhausted) as info:
            await client.get(f"{server.url}/reset-before-headers/{uuid.uuid4().hex}")
        assert info.value.attempts == 1


async def test_breaker_closed_open_half_open_closed(make_api) -> None:
    """5 failures open the breaker; open rejects with no I/O; after the cooldown a probe closes it."""
    with FaultServer() as server:  # its own origin, so no other test's traffic touches this breaker
        api = make_api(retry=RetryPolicy(attempts=0), breaker=BreakerSettings(cooldown=0.3))
        k = uuid.uuid4().hex
        url = f"{server.url}/fail/{k}?n=5&code=500"
        for _ in range(5):
            assert (await api.get(url)).status == 500
        assert api.client.breaker_state(url) == "open"
        hits = server.hits[f"fail/{k}"]
        t0 = time.perf_counter()
        for _ in range(100):
            with pytest.raises(CircuitOpenError) as info:
                await api.get(url)
        per_call = (time.perf_counter() - t0) / 100
        assert server.hits[f"fail/{k}"] == hits  # no I/O while open
        assert 0 < info.value.retry_in <= 0.3
        assert per_call < 0.01  # generous: the bench measures it; here it only must not do I/O
        await asyncio.sleep(0.35)
        r = await api.get(url)  # the half-open probe: the server has recovered
        assert r.status == 200
        assert api.client.breaker_state(url) == "closed"
        assert (await api.get(url)).status == 200


async def test_breaker_reopens_when_the_probe_fails(server: FaultServer) -> None:
    async with AsyncPerfClient(
        retry=RetryPolicy(attempts=0), breaker=BreakerSettings(consecutive_failures=2, cooldown=0.2)
    ) as client:
        with FaultServer() as own:
            url = f"{own.url}/status/503"
            for _ in range(2):
                await client.get(url)
            assert client.breaker_state(url) == "open"
            await asyncio.sleep(0.25)
            await client.get(url)  # probe fails
            assert client.breaker_state(url) == "open"
            with pytest.raises(CircuitOpenError):
                await client.get(url)


async def test_429_does_not_open_the_breaker(make_api) -> None:
    """A server shedding load with 429 is slowed down by backoff, never cut off by the breaker."""
    with FaultServer() as server:
        api = make_api(retry=RetryPolicy(attempts=0))
        for _ in range(30):
            assert (await api.get(f"{server.url}/status/429")).status == 429
        assert api.client.breaker_state(server.url) == "closed"


async def test_breaker_is_per_origin(make_api) -> None:
    """One origin's open breaker leaves another origin alone."""
    with FaultServer() as bad, FaultServer() as good:
        api = make_api(retry=RetryPolicy(attempts=0))
        for _ in range(5):
            await api.get(f"{bad.url}/status/503")
        with pytest.raises(CircuitOpenError):
            await api.get(f"{bad.url}/ok")
        assert (await api.get(f"{good.url}/ok")).status == 200


def test_open_breaker_rejects_a_retry_mid_call() -> None:
    """A breaker that opens between attempts stops the call's remaining retries."""
    with (
        FaultServer() as server,
        PerfClient(retry=FAST, breaker=BreakerSettings(consecutive_failures=2)) as client,
    ):
        with pytest.raises(CircuitOpenError) as info:
            client.get(f"{server.url}/reset-before-headers/{uuid.uuid4().hex}")
        assert [a.error for a in info.value.history] == ["read", "read", "circuit_open"]
