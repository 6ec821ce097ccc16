"""PhaseTimer: the per-attempt timer whose limit moves with the phase."""

from __future__ import annotations

import asyncio

import pytest

from infra.http._timer import PhaseTimer, TimerWheel


async def test_expires_at_its_limit_as_timeout_error() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    timer = PhaseTimer(start + 0.05)
    with pytest.raises(TimeoutError):
        async with timer:
            await asyncio.sleep(1)
    assert timer.expired()
    assert 0.05 <= loop.time() - start < 0.5


async def test_moving_the_limit_later_defers_expiry() -> None:
    """A later limit re-arms lazily: the old handle fires, sees the new limit, and waits on."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError):
        async with PhaseTimer(start + 0.03) as timer:
            timer.move(start + 0.15)
            await asyncio.sleep(1)
    assert loop.time() - start >= 0.15


async def test_moving_the_limit_earlier_takes_effect() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError):
        async with PhaseTimer(start + 5) as timer:
            timer.move(start + 0.03)
            await asyncio.sleep(1)
    assert loop.time() - start < 1


async def test_no_limit_never_fires() -> None:
    async with PhaseTimer(None) as timer:
        timer.move(None)
        await asyncio.sleep(0.02)
    assert not timer.expired()


async def test_an_outside_cancel_stays_a_cancel() -> None:
    """A cancel from outside is not turned into a TimeoutError, and the task stays cancelled."""
    loop = asyncio.get_running_loop()

    async def body() -> None:
        async with PhaseTimer(loop.time() + 10):
            await asyncio.sleep(5)

    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_leaves_no_pending_cancel_after_a_clean_exit() -> None:
    """Exiting before the limit cancels the handle: later awaits are not interrupted."""
    loop = asyncio.get_running_loop()
    async with PhaseTimer(loop.time() + 0.02):
        pass
    await asyncio.sleep(0.05)  # would raise CancelledError if the timer still fired


class _FastWheel(TimerWheel):
    """The production wheel at a test's time scale (20 ms buckets, filed from 50 ms out)."""

    GRAIN = 0.02
    FAR = 0.05


async def test_a_far_limit_is_filed_in_the_wheel_not_the_loop() -> None:
    """Far limits cost a dict insert: 200 timers armed and disarmed add at most one loop handle each
    second of limit (one per bucket), not one each."""
    loop = asyncio.get_running_loop()
    wheel = TimerWheel(loop)
    limit = loop.time() + 30
    for _ in range(200):
        timer = PhaseTimer(limit, wheel)
        timer.start()
        assert timer.armed_in == "wheel"  # filed in a bucket
        timer.move(limit + 30)  # later: nothing to do
        assert timer.armed_in == "wheel"
        assert not timer.stop()
    assert wheel.handles <= 1 and wheel.filed() == 0
    near = PhaseTimer(loop.time() + 0.5, wheel)  # nearer than FAR: a precise handle of its own
    near.start()
    assert near.armed_in == "loop"
    near.stop()
    assert near.armed_in is None


async def test_a_filed_timer_still_expires_at_its_limit() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    timer = PhaseTimer(start + 0.2, _FastWheel(loop))
    with pytest.raises(TimeoutError):
        async with timer:
            assert timer.armed_in == "wheel"
            await asyncio.sleep(5)
    elapsed = loop.time() - start
    assert timer.expired()
    assert 0.2 <= elapsed < 0.3  # the bucket fires early, the precise handle at the limit


async def test_a_filed_timer_moved_later_or_earlier_follows_its_limit() -> None:
    loop = asyncio.get_running_loop()
    wheel = _FastWheel(loop)
    start = loop.time()
    with pytest.raises(TimeoutError):
        async with PhaseTimer(start + 0.1, wheel) as timer:
            timer.move(start + 0.25)  # later: the bucket fires, re-files or arms precisely
            await asyncio.sleep(5)
    assert 0.25 <= loop.time() - start < 0.35
    start = loop.time()
    with pytest.raises(TimeoutError):
        async with PhaseTimer(start + 10, wheel) as timer:
            timer.move(start + 0.06)  # earlier: leaves its bucket at once
            await asyncio.sleep(5)
    assert loop.time() - start < 0.15


async def test_a_stopped_filed_timer_never_fires() -> None:
    loop = asyncio.get_running_loop()
    wheel = _FastWheel(loop)
    async with PhaseTimer(loop.time() + 0.06, wheel) as timer:
        assert timer.armed_in == "wheel" and wheel.filed() == 1
    assert wheel.filed() == 0  # it left its bucket
    await asyncio.sleep(0.15)  # the bucket's handle fires and finds nobody to cancel


async def test_a_wheel_of_another_loop_is_not_used() -> None:
    other = asyncio.new_event_loop()
    try:
        loop = asyncio.get_running_loop()
        timer = PhaseTimer(loop.time() + 30, TimerWheel(other))
        timer.start()
        assert timer.armed_in == "loop"
        timer.stop()
    finally:
        other.close()
