"""gather_ordered: concurrent, ordered, bounded, cancel or capture on failure, one deadline."""

from __future__ import annotations

import asyncio

import pytest

from infra.hotpath import gather_ordered


async def _item(log: list[tuple[str, int]], i: int, delay: float, result: object = None) -> object:
    log.append(("start", i))
    await asyncio.sleep(delay)
    log.append(("end", i))
    if isinstance(result, BaseException):
        raise result
    return f"r{i}" if result is None else result


async def test_every_item_starts_before_any_ends_and_results_keep_input_order() -> None:
    """Seed 000's check: concurrent means all starts come before the first end."""
    log: list[tuple[str, int]] = []
    # Later items finish first: the results must still follow the input order.
    out = await gather_ordered([_item(log, i, 0.03 - 0.01 * i) for i in range(3)])
    assert out == ["r0", "r1", "r2"]
    starts = [n for n, (what, _) in enumerate(log) if what == "start"]
    ends = [n for n, (what, _) in enumerate(log) if what == "end"]
    assert max(starts) < min(ends), log
    assert [i for what, i in log if what == "end"] == [2, 1, 0]


async def test_empty_input_returns_empty_list() -> None:
    assert await gather_ordered([]) == []


async def test_limit_bounds_how_many_run_at_once() -> None:
    running = 0
    peak = 0

    async def one(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.005)
        running -= 1
        return i

    assert await gather_ordered([one(i) for i in range(10)], limit=3) == list(range(10))
    assert peak == 3


async def test_first_failure_cancels_the_rest_and_is_raised() -> None:
    log: list[tuple[str, int]] = []
    slow_cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            slow_cancelled.set()
            raise

    with pytest.raises(KeyError, match="boom"):
        await gather_ordered([slow(), _item(log, 1, 0.001, KeyError("boom"))])
    # The sibling was cancelled and had unwound before gather_ordered returned.
    assert slow_cancelled.is_set()


async def test_cancel_mode_raises_the_earliest_failure_in_input_order_when_several_fail_together() -> None:
    log: list[tuple[str, int]] = []
    with pytest.raises(ValueError, match="first"):
        await gather_ordered([_item(log, 0, 0, ValueError("first")), _item(log, 1, 0, KeyError("second"))])


async def test_capture_mode_puts_each_exception_in_its_slot_and_runs_everything() -> None:
    log: list[tuple[str, int]] = []
    out = await gather_ordered(
        [_item(log, 0, 0.002), _item(log, 1, 0.001, ValueError("bad")), _item(log, 2, 0.003)],
        on_error="capture",
    )
    assert out[0] == "r0" and out[2] == "r2"
    assert isinstance(out[1], ValueError) and str(out[1]) == "bad"
    assert sorted(i for what, i in log if what == "end") == [0, 1, 2]


async def test_timeout_cancels_unfinished_items_and_raises_timeout_error() -> None:
    log: list[tuple[str, int]] = []
    with pytest.raises(TimeoutError, match="1 of 2 items unfinished"):
        await gather_ordered([_item(log, 0, 0), _item(log, 1, 10)], timeout=0.02)
    assert ("end", 1) not in log


async def test_timeout_in_capture_mode_fills_unfinished_slots_with_timeout_error() -> None:
    log: list[tuple[str, int]] = []
    out = await gather_ordered([_item(log, 0, 0), _item(log, 1, 10)], timeout=0.02, on_error="capture")
    assert out[0] == "r0"
    assert isinstance(out[1], TimeoutError)


async def test_cancelling_the_caller_cancels_every_item() -> None:
    cancelled: list[int] = []

    async def forever(i: int) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    task = asyncio.ensure_future(gather_ordered([forever(i) for i in range(3)]))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(cancelled) == [0, 1, 2]


async def test_items_queued_behind_the_limit_are_closed_not_leaked_on_failure() -> None:
    """Coroutines that never got a slot are closed (no 'never awaited' warning, an error here)."""

    async def fail() -> None:
        raise RuntimeError("x")

    async def later() -> int:
        return 1

    with pytest.raises(RuntimeError):
        await gather_ordered([fail(), *[later() for _ in range(5)]], limit=1)


async def test_non_awaitable_input_raises_type_error_and_closes_the_rest() -> None:
    async def ok() -> int:
        return 1

    with pytest.raises(TypeError):
        await gather_ordered([ok(), 42, ok()])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"limit": 0}, "limit"), ({"timeout": -1}, "timeout"), ({"on_error": "ignore"}, "on_error")],
)
async def test_bad_arguments_name_the_parameter(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await gather_ordered([], **kwargs)  # type: ignore[call-overload]
