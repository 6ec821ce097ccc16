"""`timed`: with / async with / decorators on every function kind; errors counted and re-raised."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.metrics import DEFAULT_BUCKETS, MetricsRegistry, timed
from infra.metrics._core import PENDING_FOLD_AT


def _op(registry: MetricsRegistry, name: str) -> dict[str, float]:
    return registry.get_stats()[name]  # type: ignore[no-any-return]


def _seconds(registry: MetricsRegistry, name: str) -> float:
    h = registry.get("infra_operation_duration_seconds")
    assert h is not None
    return h.labels(name).cumulative()[1]  # type: ignore[attr-defined, no-any-return]


def test_with_block_records_one_observation(registry: MetricsRegistry) -> None:
    with timed("block", registry=registry) as t:
        pass
    assert repr(t).startswith('<Timer infra_operation_duration_seconds{operation="block"}')
    assert _op(registry, "block")["count"] == 1


def test_exception_is_counted_as_error_and_re_raised_unchanged(registry: MetricsRegistry) -> None:
    err = ValueError("original")
    with pytest.raises(ValueError) as info, timed("fails", registry=registry):
        raise err
    assert info.value is err
    stats = _op(registry, "fails")
    assert stats["count"] == 1 and stats["errors"] == 1


async def test_async_with_records_the_awaited_time(registry: MetricsRegistry) -> None:
    async with timed("awaits", registry=registry):
        await asyncio.sleep(0.05)
    assert _seconds(registry, "awaits") >= 0.05


def test_decorated_function_keeps_name_and_result_and_records(registry: MetricsRegistry) -> None:
    @timed("double", registry=registry)
    def double(x: int) -> int:
        """Doc."""
        return 2 * x

    assert double(21) == 42
    assert double.__name__ == "double" and double.__doc__ == "Doc."
    assert _op(registry, "double")["count"] == 1


async def test_async_def_records_awaited_time_not_coroutine_creation(registry: MetricsRegistry) -> None:
    """prometheus_client records ~1 µs for an async def (client_python#535); we record the await."""

    @timed("coro", registry=registry)
    async def slow() -> str:
        await asyncio.sleep(0.05)
        return "done"

    assert asyncio.iscoroutinefunction(slow)
    assert await slow() == "done"
    assert _seconds(registry, "coro") >= 0.05


async def test_async_def_exception_counts_as_error(registry: MetricsRegistry) -> None:
    @timed("coro_fail", registry=registry)
    async def boom() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        await boom()
    assert _op(registry, "coro_fail")["errors"] == 1


def test_generator_is_timed_until_exhausted_and_send_is_forwarded(registry: MetricsRegistry) -> None:
    import time

    @timed("gen", registry=registry)
    def gen() -> Iterator[int]:
        got = yield 1
        time.sleep(0.03)
        yield got * 10

    g = gen()
    assert next(g) == 1
    assert "gen" not in registry.get_stats()  # not finished: nothing recorded yet
    assert g.send(4) == 40
    with pytest.raises(StopIteration):
        next(g)
    assert _op(registry, "gen")["count"] == 1
    assert _seconds(registry, "gen") >= 0.03


def test_generator_closed_early_is_recorded_but_not_an_error(registry: MetricsRegistry) -> None:
    @timed("gen_closed", registry=registry)
    def gen() -> Iterator[int]:
        yield from range(10)

    g = gen()
    next(g)
    g.close()
    stats = _op(registry, "gen_closed")
    assert stats["count"] == 1 and stats["errors"] == 0


def test_generator_exception_is_an_error(registry: MetricsRegistry) -> None:
    @timed("gen_fail", registry=registry)
    def gen() -> Iterator[int]:
        yield 1
        raise RuntimeError("mid-stream")

    with pytest.raises(RuntimeError, match="mid-stream"):
        list(gen())
    assert _op(registry, "gen_fail")["errors"] == 1


async def test_async_generator_is_timed_until_exhausted(registry: MetricsRegistry) -> None:
    @timed("agen", registry=registry)
    async def agen() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(0.03)
        yield 2

    assert [x async for x in agen()] == [1, 2]
    assert _op(registry, "agen")["count"] == 1
    assert _seconds(registry, "agen") >= 0.03


async def test_async_generator_forwards_asend_athrow_and_aclose(registry: MetricsRegistry) -> None:
    seen: list[object] = []

    @timed("agen_fwd", registry=registry)
    async def agen() -> AsyncIterator[object]:
        while True:
            try:
                got = yield len(seen)
                seen.append(got)
            except LookupError as exc:
                seen.append(f"caught {exc!r}")

    g = agen()
    assert await g.__anext__() == 0
    assert await g.asend("a") == 1
    assert await g.athrow(KeyError("x")) == 2
    await g.aclose()
    assert seen == ["a", "caught KeyError('x')"]
    stats = _op(registry, "agen_fwd")
    assert stats["count"] == 1 and stats["errors"] == 0


async def test_async_generator_exception_is_an_error(registry: MetricsRegistry) -> None:
    @timed("agen_fail", registry=registry)
    async def agen() -> AsyncIterator[int]:
        yield 1
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        async for _ in agen():
            pass
    assert _op(registry, "agen_fail")["errors"] == 1


async def test_concurrent_tasks_each_get_their_own_timing(registry: MetricsRegistry) -> None:
    async def one(d: float) -> None:
        async with timed("tasks", registry=registry):
            await asyncio.sleep(d)

    await asyncio.gather(one(0.05), one(0.01), one(0.03))
    h = registry.get("infra_operation_duration_seconds")
    sk = h.labels("tasks").sketch()  # type: ignore[union-attr]
    assert sk.count == 3
    assert sk.min >= 0.01 and sk.max >= 0.05


def test_timed_from_threads_counts_every_use(registry: MetricsRegistry) -> None:
    def work() -> None:
        for _ in range(5000):
            with timed("threads", registry=registry):
                pass

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert _op(registry, "threads")["count"] == 20_000


def test_histogram_time_is_prometheus_client_compatible(registry: MetricsRegistry) -> None:
    h = registry.histogram("job_seconds")
    with h.time():
        pass

    @h.time()
    def f() -> int:
        return 1

    assert f() == 1
    assert h.labels().cumulative()[0][-1] == 2


def test_timed_refuses_a_non_string_operation(registry: MetricsRegistry) -> None:
    with pytest.raises(TypeError, match="operation must be a str"):
        timed(42, registry=registry)  # type: ignore[arg-type]


def test_operations_past_the_series_limit_share_the_overflow_series() -> None:
    reg = MetricsRegistry(max_series_per_metric=2)
    for i in range(5):
        with timed(f"op{i}", registry=reg):
            pass
    stats = reg.get_stats()
    assert stats["op0"]["count"] == 1 and stats["op1"]["count"] == 1
    assert stats["__overflow__"]["count"] == 3
    assert len(reg._timed) == 2  # seam: the per-name class cache keeps nothing for the refused names


def test_a_failure_while_recording_never_changes_the_outcome(
    registry: MetricsRegistry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Fail open: if recording breaks, the block's result and exception stand; logged once."""
    from infra.metrics import _timer

    @timed("broken", registry=registry)
    def f() -> int:
        return 7

    h = registry.get("infra_operation_duration_seconds").labels("broken")  # type: ignore[union-attr]

    def explode(*_: object) -> None:
        raise RuntimeError("metrics bug")

    monkeypatch.setattr(_timer, "_failure_logged", False)
    monkeypatch.setattr(type(h), "note", explode)
    monkeypatch.setattr(type(h), "fold_pending", explode)
    assert f() == 7
    # a full batch: the next `with` folds it, and the fold breaks
    h.pending.extend([1e-3] * (PENDING_FOLD_AT - 1))
    with pytest.raises(KeyError), timed("broken", registry=registry):
        raise KeyError("mine")
    with timed("broken", registry=registry):
        pass
    assert [r.message for r in caplog.records].count(
        "timed: recording infra_operation_duration_seconds failed; the timed code is unaffected"
    ) == 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(min_value=0.0, max_value=1e4, allow_nan=False),
            st.sampled_from([0.0, *DEFAULT_BUCKETS]),  # exactly on an `le` boundary
            st.sampled_from(DEFAULT_BUCKETS).map(lambda b: math.nextafter(b, 0.0)),
            st.sampled_from(DEFAULT_BUCKETS).map(lambda b: math.nextafter(b, math.inf)),
            st.floats(min_value=1e-9, max_value=1e-6),  # what `with: pass` measures
        ),
        max_size=3 * PENDING_FOLD_AT,
    )
)
def test_timer_batches_count_exactly_what_observe_counts_one_by_one(values: list[float]) -> None:
    """The sorted batch fold is an optimisation of ``observe``: same `le` counts, sum, min, max and
    quantile sketch, for any durations, at and beside every bucket boundary."""
    reg = MetricsRegistry()
    noted = reg.histogram("noted_seconds").labels()
    observed = reg.histogram("observed_seconds").labels()
    for v in values:
        noted.note(v)
        observed.observe(v)
    assert noted.le_counts()[0] == observed.le_counts()[0]
    assert noted.le_counts()[1] == pytest.approx(observed.le_counts()[1], rel=1e-9, abs=1e-12)
    a, b = noted.sketch(), observed.sketch()
    assert (a.count, a.min, a.max) == (b.count, b.min, b.max)
    for q in (0.5, 0.9, 0.99):
        assert a.quantile(q) == b.quantile(q) or (math.isnan(a.quantile(q)) and math.isnan(b.quantile(q)))
