"""The layer's per-request fast paths decide exactly as the plain paths they shortcut: the retry budget's
lock-free deposit once it is full, the one-call ``received`` response, the wheel's clock, the
active-connections gauge counted inline and pushed before each read, and the fake-backend seam."""

from __future__ import annotations

import asyncio
import random
import threading
from fractions import Fraction
from typing import Any

import pytest

from infra.http import AsyncPerfClient, BreakerConfig, CircuitOpenError, RetryBudgetConfig, RetryConfig
from infra.http._async_client import install_backend
from infra.http._budget import RetryBudget, exact_ratio
from infra.http._lease import AsyncGate, pass_on, pass_on_async
from infra.http._response import Response, backend_headers, received
from infra.http._timer import PhaseTimer, TimerWheel
from infra.metrics import get_metrics
from infra.metrics.exposition import render_text


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class PlainBudget:
    """The budget's rules with no shortcut (RetryBudget before its ``full`` flag): the reference."""

    def __init__(self, settings: RetryBudgetConfig, clock: Clock) -> None:
        ratio = exact_ratio(settings.ratio)
        self.cost, self.earn = ratio.denominator, ratio.numerator
        self.rate = settings.per_second * self.cost
        reserve = int(self.rate)
        self.cap = max(reserve * 10, self.cost)
        self.lead_max = max(self.cap, self.cost)
        self.tokens, self.lead, self.clock, self.stamp = reserve, -reserve, clock, clock()

    def add(self, units: int) -> None:
        self.tokens = min(self.tokens + units, self.cap)

    def deposit(self) -> None:
        after = self.lead + self.earn
        if after > 0:
            self.add(after - self.lead if self.lead > 0 else after)
        self.lead = min(after, self.lead_max)

    def refill(self) -> None:
        if self.rate:
            units = int((self.clock() - self.stamp) * self.rate)
            if units > 0:
                self.stamp += units / self.rate
                if self.lead < units:
                    self.add(units - self.lead if self.lead > 0 else units)
                self.lead = max(self.lead - units, -self.lead_max)

    def balance(self) -> Fraction:
        self.refill()
        return Fraction(self.tokens, self.cost)

    def try_withdraw(self) -> bool:
        self.refill()
        if self.tokens >= self.cost:
            self.tokens -= self.cost
            return True
        return False


@pytest.mark.parametrize(("ratio", "per_second"), [(0.2, 10.0), (0.1, 0.0), (0.5, 2.0), (0.0, 5.0)])
def test_a_full_budget_skips_its_deposits_and_decides_as_the_plain_rules(
    ratio: float, per_second: float
) -> None:
    settings = RetryBudgetConfig(ratio=ratio, per_second=per_second)
    rng = random.Random(7)
    clock = Clock()
    budget, plain = RetryBudget(settings, clock=clock), PlainBudget(settings, clock)
    went_full = False
    for _ in range(20000):
        roll = rng.random()
        if roll < 0.9:
            budget.deposit()
            plain.deposit()
        elif roll < 0.97:
            assert budget.try_withdraw() == plain.try_withdraw()
        else:
            clock.t += rng.choice((0.001, 0.05, 0.5, 3.0))
        went_full = went_full or budget.full
        assert budget.balance == plain.balance()  # a read refills both alike
    for _ in range(3000):  # then a healthy burst: the requests' lead reaches the cap (ten seconds of reserve)
        budget.deposit()
        plain.deposit()
        went_full = went_full or budget.full
        assert budget.balance == plain.balance()
    assert went_full == (ratio > 0)  # healthy traffic reaches the steady state the shortcut is for


def test_a_full_budget_is_left_by_a_withdrawal_and_refilled_by_deposits() -> None:
    budget = RetryBudget(RetryBudgetConfig(ratio=0.2, per_second=10.0), clock=Clock())
    for _ in range(600):
        budget.deposit()
    assert budget.full and budget.balance == 100  # ten seconds of reserve: the cap
    assert budget.try_withdraw()
    assert not budget.full and budget.balance == 99
    for _ in range(5):
        budget.deposit()
    assert budget.full and budget.balance == 100


def test_received_builds_the_same_response_as_the_constructor() -> None:
    source = {"content-type": "text/plain"}
    args = (200, source, b"body", "http://h:80/x", "GET", "http://h:80", "HTTP/1.1")
    fast = received(*args)
    plain = Response(
        200,
        backend_headers(source),
        b"body",
        url="http://h:80/x",
        method="GET",
        origin="http://h:80",
        http_version="HTTP/1.1",
    )
    for name in Response.__slots__:  # a slot added to Response and not set by received() fails here
        if name == "headers":
            assert dict(fast.headers) == dict(plain.headers)
        else:
            assert getattr(fast, name) == getattr(plain, name), name


class _ShiftedLoop(asyncio.SelectorEventLoop):
    """A loop whose clock is not time.monotonic: the wheel must read the loop's own."""

    def time(self) -> float:
        return super().time() + 5000.0


def test_the_wheel_reads_the_loop_s_own_clock() -> None:
    async def main() -> tuple[str | None, str | None]:
        loop = asyncio.get_running_loop()
        wheel = TimerWheel(loop)
        far, near = PhaseTimer(loop.time() + 30, wheel), PhaseTimer(loop.time() + 0.5, wheel)
        far.start()
        near.start()
        placed = far.armed_in, near.armed_in
        far.stop()
        near.stop()
        return placed

    loop = _ShiftedLoop()
    try:
        assert loop.run_until_complete(main()) == ("wheel", "loop")
    finally:
        loop.close()


class _HeldBackend:
    """A fake backend (through the ``install_backend`` seam) whose sends wait for ``go``."""

    classify = staticmethod(lambda exc: None)
    closes_itself = True

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.sent = 0
        self.all_sent = asyncio.Event()
        self.expect = 0

    async def send(self, *args: Any) -> Any:
        self.sent += 1
        if self.sent == self.expect:
            self.all_sent.set()
        await self.go.wait()
        return _Resp()

    @staticmethod
    async def read(resp: Any) -> bytes:
        return b"ok"

    status = staticmethod(lambda resp: resp.status)
    version = staticmethod(lambda resp: "HTTP/1.1")

    @staticmethod
    async def drop(resp: Any) -> None:
        return None


class _Resp:
    status = 200
    headers: dict[str, str] = {}


def _active(origin: str) -> str:
    text = render_text(get_metrics())
    prefix = 'infra_http_active_connections{origin="' + origin + '"} '
    return next(line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix))


async def test_the_active_gauge_sums_every_client_of_an_origin_at_each_read() -> None:
    origin = f"http://layer-{threading.get_ident()}.test:80"
    one, two = AsyncPerfClient(), AsyncPerfClient()
    backend = _HeldBackend()
    backend.expect = 5
    for client in (one, two):
        install_backend(client, backend)
    calls = [asyncio.create_task(c.get(origin + "/x")) for c in (one, one, one, two, two)]
    await asyncio.wait_for(backend.all_sent.wait(), 5)
    assert float(_active(origin)) == 5  # three held by one client, two by the other
    backend.go.set()
    assert [r.status for r in await asyncio.gather(*calls)] == [200] * 5
    assert float(_active(origin)) == 0
    assert one.pool_stats()["in_use"] == two.pool_stats()["in_use"] == 0
    await one.aclose()
    await two.aclose()


def _gates(rng: random.Random, loop: asyncio.AbstractEventLoop) -> tuple[AsyncGate, AsyncGate]:
    """A host and a global gate as a release finds them: some callers queued (some gave up), some slots
    free, the global head passed over some times already; the host gate sometimes in debt (resized down
    with callers queued: ``_lease.resize``)."""
    host, glob = AsyncGate(rng.randint(1, 3)), AsyncGate(rng.randint(1, 4))
    for gate in (host, glob):
        gate.free = 0 if rng.random() < 0.7 else rng.randint(1, gate.size)
        if gate is host and gate.free == 0 and rng.random() < 0.3:
            gate.free = -rng.randint(1, 3)
        gate.bypassed = rng.randint(0, gate.size)
        for _ in range(rng.randint(0, 3) if gate.free <= 0 else 0):
            fut = loop.create_future()
            if rng.random() < 0.3:
                fut.cancel()
            gate.waiters.append(fut)
    return host, glob


def _state(host: AsyncGate, glob: AsyncGate, futs: list[asyncio.Future[Any]]) -> tuple[Any, ...]:
    # a caller handed both slots is handed the global gate itself (it gives its slot back there)
    got = [f.result() if f.done() and not f.cancelled() else None for f in futs]
    handed = tuple("global" if r is glob else r for r in got)
    return host.free, glob.free, host.bypassed, glob.bypassed, len(host.waiters), len(glob.waiters), handed


async def test_pass_on_async_hands_the_slots_over_as_pass_on_does() -> None:
    loop = asyncio.get_running_loop()
    for seed in range(400):
        got = []
        for release in (pass_on, pass_on_async):
            host, glob = _gates(random.Random(seed), loop)
            futs = [*host.waiters, *glob.waiters]
            release(host, glob)
            got.append(_state(host, glob, futs))
        assert got[0] == got[1], seed


class _Plain(AsyncPerfClient):
    """The client with its plain reference twin in place of the written-out hot path."""

    async def _run(self, args: Any) -> Any:
        return await self._run_reference(args)


async def _breaker_story(client: AsyncPerfClient, url: str) -> list[Any]:
    """A 500 opens the breaker, the next call is refused, the probe after the cooldown closes it."""
    seen: list[Any] = [(await client.get(f"{url}/status/500")).status, client.breaker_state(url)]
    try:
        await client.get(f"{url}/ok")
    except CircuitOpenError as exc:
        seen.append(("refused", [a.error for a in exc.history]))
    await asyncio.sleep(0.15)
    probe = await client.get(f"{url}/ok")
    seen += [probe.status, len(probe.history), client.breaker_state(url), client.pool_stats()["in_use"]]
    return seen


async def test_the_hot_path_and_its_twin_agree_through_an_open_and_half_open_breaker(server: Any) -> None:
    """The hot path's Call is made up front only when the breaker is not closed (a refusal, a probe)."""
    kw: dict[str, Any] = {
        "retry": RetryConfig(attempts=0),
        "breaker": BreakerConfig(consecutive_failures=1, cooldown=0.1),
    }
    got = []
    for cls in (AsyncPerfClient, _Plain):
        async with cls(**kw) as client:
            got.append(await _breaker_story(client, server.url))
    assert got[0] == got[1] == [500, "open", ("refused", []), 200, 0, "closed", 0]


def test_a_loop_s_breaker_records_without_its_lock_and_decides_alike() -> None:
    """The async client's breakers are recorded from its loop's thread only (no lock on a success); the
    sync client's from many threads. Both open, reject and close on the same outcomes."""
    from infra.http import PerfClient
    from infra.http._breaker import FAILURE, NORMAL, SUCCESS, CircuitBreaker

    assert not AsyncPerfClient().host_state("http://a.test:80/").breaker.threaded
    assert PerfClient().host_state("http://a.test:80/").breaker.threaded
    seen = []
    for threaded in (True, False):
        rng = random.Random(3)
        clock = Clock()
        breaker = CircuitBreaker(BreakerConfig(cooldown=1.0), clock=clock, threaded=threaded)
        states = []
        for _ in range(3000):
            clock.t += rng.choice((0.001, 0.01, 0.3))
            admission = breaker.admit()
            states.append((admission, breaker.state))
            if admission >= NORMAL:
                breaker.record(FAILURE if rng.random() < 0.3 else SUCCESS, admission)
            states.append((admission, breaker.state))
        seen.append(states)
    assert seen[0] == seen[1]
    assert {s for _, s in seen[0]} == {"closed", "open", "half_open"}
