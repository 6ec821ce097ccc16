"""PhaseTimer: the per-attempt timer whose limit moves with the phase."""

from __future__ import annotations

import asyncio

import pytest

from infra.http._timer import PhaseTimer


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
