"""MicroBatcher: coalescing, ordering, error isolation, backpressure, the wait rule, run-time settings."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from infra.errors import BackpressureError
from infra.inference import MicroBatcher
from infra.metrics import get_metrics

GUARD = 10.0  # seconds: a hang guard only, never a timing assertion


class Recorder:
    """A batched fn that records every batch it was called with."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        return [i * 10 for i in items]


async def test_concurrent_async_calls_coalesce_and_each_caller_gets_its_own_result() -> None:
    fn = Recorder()
    # A long max_wait means every batch goes because it is full: the sizes are deterministic.
    with MicroBatcher(fn, max_batch_size=10, max_wait_ms=60_000, name="t-coalesce") as b:
        out = await asyncio.wait_for(asyncio.gather(*(b.asubmit(i) for i in range(50))), GUARD)
    assert out == [i * 10 for i in range(50)]
    assert [len(x) for x in fn.batches] == [10] * 5
    assert sorted(i for batch in fn.batches for i in batch) == list(range(50))


def test_threads_submitting_at_once_get_their_own_results() -> None:
    fn = Recorder()
    results: dict[int, int] = {}
    with MicroBatcher(fn, max_batch_size=8, max_wait_ms=5, name="t-threads") as b:

        def worker(i: int) -> None:
            results[i] = b.submit(i)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(GUARD)
    assert results == {i: i * 10 for i in range(24)}
    assert max(len(x) for x in fn.batches) <= 8


async def test_threads_and_event_loop_share_one_batcher() -> None:
    fn = Recorder()
    with MicroBatcher(fn, max_batch_size=6, max_wait_ms=60_000, name="t-mixed") as b:
        thread_results: list[int] = []
        t = threading.Thread(target=lambda: thread_results.extend(b.submit_many([100, 101, 102])))
        t.start()
        out = await asyncio.wait_for(asyncio.gather(*(b.asubmit(i) for i in range(3))), GUARD)
        await asyncio.to_thread(t.join, GUARD)
    assert out == [0, 10, 20] and thread_results == [1000, 1010, 1020]


async def test_submit_many_keeps_order_and_empty_input_is_empty() -> None:
    with MicroBatcher(Recorder(), max_batch_size=4, max_wait_ms=0, name="t-many") as b:
        assert await b.asubmit_many([3, 1, 2, 5, 4, 9]) == [30, 10, 20, 50, 40, 90]
        assert b.submit_many([7, 8]) == [70, 80]
        assert await b.asubmit_many([]) == [] and b.submit_many([]) == []


async def test_a_bad_item_fails_only_its_own_caller() -> None:
    def fn(items: list[int]) -> list[int]:
        if any(i < 0 for i in items):
            raise ValueError("negative input")
        return [i + 1 for i in items]

    with MicroBatcher(fn, max_batch_size=5, max_wait_ms=60_000, name="t-isolate") as b:
        out = await asyncio.wait_for(
            asyncio.gather(*(b.asubmit(i) for i in (1, 2, -3, 4, 5)), return_exceptions=True), GUARD
        )
    assert out[:2] == [2, 3] and out[3:] == [5, 6]
    assert isinstance(out[2], ValueError) and "negative" in str(out[2])


async def test_without_isolation_the_whole_batch_shares_the_error() -> None:
    def fn(items: list[int]) -> Sequence[int]:
        return items[:-1]  # one result short

    with MicroBatcher(fn, max_batch_size=2, max_wait_ms=60_000, isolate_errors=False, name="t-short") as b:
        out = await asyncio.wait_for(
            asyncio.gather(b.asubmit(1), b.asubmit(2), return_exceptions=True), GUARD
        )
    assert all(isinstance(e, ValueError) and "returned 1 results for 2 items" in str(e) for e in out)


def test_full_queue_raises_backpressure_error_naming_the_limit() -> None:
    started = threading.Event()
    release = threading.Event()

    def slow(items: list[int]) -> list[int]:
        started.set()
        release.wait(GUARD)
        return items

    b = MicroBatcher(slow, max_batch_size=1, max_wait_ms=0, max_queue=2, name="t-full")
    first = threading.Thread(target=b.submit, args=(0,))
    first.start()
    assert started.wait(GUARD)  # the worker holds item 0; the queue is empty again
    waiting = [threading.Thread(target=b.submit, args=(i,)) for i in (1, 2)]
    for t in waiting:
        t.start()
    for _ in range(1000):  # bounded: until both are queued
        if b.queued == 2:
            break
        threading.Event().wait(0.001)
    with pytest.raises(BackpressureError, match="max_queue=2"):
        b.submit(3)
    assert b.stats.rejected == 1
    release.set()
    for t in [first, *waiting]:
        t.join(GUARD)
    b.close()


def test_a_lone_item_waits_max_wait_for_company_then_goes_alone() -> None:
    """The window opens at the first item: alone, it waits the full max_wait (never less), then goes."""
    fn = Recorder()
    with MicroBatcher(fn, max_batch_size=8, max_wait_ms=30, name="t-lone") as b:
        assert b.submit(7) == 70
    assert fn.batches == [[7]]
    (series,) = [
        s
        for s in get_metrics().histogram_stats("infra_batch_wait_seconds")
        if s["labels"]["batcher"] == "t-lone"
    ]
    assert series["count"] == 1 and series["min"] >= 0.030 * 0.99  # sketch: 1% relative accuracy


def test_a_full_batch_goes_without_waiting_out_max_wait() -> None:
    """Two items with max_batch_size=2 and a one-minute max_wait: the batch goes when full."""
    fn = Recorder()
    with MicroBatcher(fn, max_batch_size=2, max_wait_ms=60_000, name="t-full-batch") as b:
        out: list[int] = []
        t = threading.Thread(target=lambda: out.append(b.submit(1)))
        t.start()
        out.append(b.submit(2))
        t.join(GUARD)
    assert sorted(out) == [10, 20] and fn.batches and len(fn.batches[0]) == 2


async def test_settings_change_at_run_time() -> None:
    fn = Recorder()
    b = MicroBatcher(fn, max_batch_size=10, max_wait_ms=60_000, name="t-configure")
    b.configure(max_batch_size=3)
    assert b.max_batch_size == 3 and b.max_wait_ms == 60_000
    await asyncio.wait_for(asyncio.gather(*(b.asubmit(i) for i in range(9))), GUARD)
    assert [len(x) for x in fn.batches] == [3, 3, 3]
    with pytest.raises(ValueError, match="max_batch_size"):
        b.configure(max_batch_size=0)
    assert b.max_batch_size == 3  # a rejected change leaves the old settings
    b.close()


def test_batch_sizes_go_into_a_histogram() -> None:
    with MicroBatcher(Recorder(), max_batch_size=4, max_wait_ms=60_000, name="t-metrics") as b:
        b.submit_many([1, 2, 3, 4])
    (series,) = [
        s for s in get_metrics().histogram_stats("infra_batch_size") if s["labels"]["batcher"] == "t-metrics"
    ]
    assert series["count"] == 1 and series["max"] == 4


def test_close_finishes_queued_items_and_refuses_new_ones() -> None:
    fn = Recorder()
    b = MicroBatcher(fn, max_batch_size=100, max_wait_ms=60_000, name="t-close")
    out: list[int] = []
    t = threading.Thread(target=lambda: out.extend(b.submit_many([1, 2])))
    t.start()
    for _ in range(1000):  # bounded: until queued
        if b.queued:
            break
        threading.Event().wait(0.001)
    b.close()  # the half-full batch goes now instead of waiting a minute
    t.join(GUARD)
    assert out == [10, 20] and b.closed
    with pytest.raises(RuntimeError, match="closed"):
        b.submit(3)


def test_the_batching_section_sets_the_batcher_and_keywords_override_it() -> None:
    import dataclasses

    from infra.config import load_config

    section = load_config().batching
    b = MicroBatcher(Recorder(), section, name="t-config")
    assert (b.max_batch_size, b.max_wait_ms, b.max_queue) == (32, 2.0, 1024)
    b.close()
    b = MicroBatcher(Recorder(), dataclasses.replace(section, max_queue=7), max_batch_size=4, name="t-config")
    assert (b.max_batch_size, b.max_wait_ms, b.max_queue) == (4, 2.0, 7)
    b.close()


@pytest.mark.parametrize("kwargs", [{"max_batch_size": 0}, {"max_wait_ms": -1}, {"max_queue": 0}])
def test_bad_settings_raise_naming_the_setting(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        MicroBatcher(Recorder(), **kwargs)  # type: ignore[arg-type]


def test_stats_to_dict_lists_every_counter_and_the_mean() -> None:
    with MicroBatcher(Recorder(), max_batch_size=4, max_wait_ms=0, name="t-stats") as b:
        b.submit_many([1, 2, 3, 4])
        b.submit_many([5, 6])
    assert b.stats.to_dict() == {
        "batches": 2,
        "items": 6,
        "max_batch_seen": 4,
        "rejected": 0,
        "mean_batch_size": 3.0,
    }


def test_keywords_given_as_none_keep_the_sections_values() -> None:
    with MicroBatcher(Recorder(), max_batch_size=None, max_wait_ms=None, max_queue=5, name="t-none") as b:
        assert (b.max_batch_size, b.max_wait_ms, b.max_queue) == (32, 2.0, 5)
        b.configure(max_queue=None, max_wait_ms=7)
        assert (b.max_batch_size, b.max_wait_ms, b.max_queue) == (32, 7.0, 5)
