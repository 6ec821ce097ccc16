"""TimedMemo / timed_memo: TTL never exceeded, LRU bound, single-flight for async, no error memoised."""

from __future__ import annotations

import asyncio
import threading

import pytest

from infra.hotpath import TimedMemo, timed_memo


class FakeClock:
    """A settable monotonic clock, so TTL tests need no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_value_is_returned_until_ttl_and_never_after() -> None:
    clock = FakeClock()
    memo: TimedMemo[str, list[str]] = TimedMemo(ttl=300, clock=clock)
    memo.set("q", ["a"])
    clock.now += 299.999
    assert memo.get("q") == ["a"]
    clock.now += 0.001  # exactly ttl after the store: stale
    assert memo.get("q") is None
    assert len(memo) == 0


def test_get_or_compute_calls_once_then_recomputes_after_expiry() -> None:
    clock = FakeClock()
    memo: TimedMemo[str, int] = TimedMemo(ttl=10, clock=clock)
    calls = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert memo.get_or_compute("k", compute) == 1
    assert memo.get_or_compute("k", compute) == 1
    clock.now += 10
    assert memo.get_or_compute("k", compute) == 2
    assert memo.hits == 1 and memo.misses == 2


def test_max_entries_evicts_least_recently_used() -> None:
    memo: TimedMemo[int, int] = TimedMemo(ttl=60, max_entries=2)
    memo.set(1, 1)
    memo.set(2, 2)
    memo.get(1)  # 1 is now the most recent
    memo.set(3, 3)
    assert memo.get(2) is None
    assert memo.get(1) == 1 and memo.get(3) == 3


def test_invalidate_and_clear() -> None:
    memo: TimedMemo[str, int] = TimedMemo(ttl=60)
    memo.set("a", 1)
    memo.set("b", 2)
    memo.invalidate("a")
    assert memo.get("a") is None and memo.get("b") == 2
    memo.clear()
    assert len(memo) == 0


def test_exceptions_are_not_memoised() -> None:
    memo: TimedMemo[str, int] = TimedMemo(ttl=60)
    attempts = []

    def flaky() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("vector store down")
        return 7

    with pytest.raises(ConnectionError):
        memo.get_or_compute("k", flaky)
    assert memo.get_or_compute("k", flaky) == 7


async def test_concurrent_async_misses_share_one_computation() -> None:
    memo: TimedMemo[str, str] = TimedMemo(ttl=60)
    calls = 0

    async def search() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return "results"

    out = await asyncio.gather(*(memo.aget_or_compute("q", search) for _ in range(5)))
    assert out == ["results"] * 5
    assert calls == 1


async def test_async_failure_reaches_every_waiter_and_is_not_stored() -> None:
    memo: TimedMemo[str, str] = TimedMemo(ttl=60)

    async def broken() -> str:
        await asyncio.sleep(0.005)
        raise LookupError("nope")

    results = await asyncio.gather(
        *(memo.aget_or_compute("q", broken) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, LookupError) for r in results)
    assert memo.get("q") is None


def test_decorator_keys_on_arguments_for_sync_functions() -> None:
    calls: list[tuple[str, int]] = []

    @timed_memo(ttl=60, max_entries=10)
    def search(query: str, *, top_k: int = 5) -> list[str]:
        calls.append((query, top_k))
        return [query] * top_k

    assert search("a") == ["a"] * 5
    assert search("a") == ["a"] * 5
    assert search("a", top_k=2) == ["a", "a"]
    assert calls == [("a", 5), ("a", 2)]
    search.memo.clear()  # type: ignore[attr-defined]
    search("a")
    assert len(calls) == 3


async def test_decorator_works_on_async_functions() -> None:
    calls = 0

    @timed_memo(ttl=60)
    async def search(query: str) -> str:
        nonlocal calls
        calls += 1
        return query.upper()

    assert await search("x") == "X"
    assert await search("x") == "X"
    assert calls == 1


def test_thread_safety_under_concurrent_set_and_get() -> None:
    memo: TimedMemo[int, int] = TimedMemo(ttl=60, max_entries=50)
    errors: list[BaseException] = []

    def worker(base: int) -> None:
        try:
            for i in range(500):
                memo.set(base * 1000 + i % 80, i)
                memo.get(base * 1000 + (i * 7) % 80)
        except BaseException as exc:  # pragma: no cover - would fail the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(memo) <= 50


@pytest.mark.parametrize(
    ("kwargs", "word"), [({"ttl": 0}, "ttl"), ({"ttl": 1, "max_entries": 0}, "max_entries")]
)
def test_bad_settings_name_the_parameter(kwargs: dict[str, float], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        TimedMemo(**kwargs)  # type: ignore[arg-type]


def test_a_cache_namespace_gives_the_memo_its_ttl() -> None:
    from infra.config import load_config

    cfg = load_config()
    memo: TimedMemo[str, str] = TimedMemo(ttl=cfg.cache.namespaces["search"].ttl, max_entries=5)
    assert memo.ttl == cfg.cache.namespaces["search"].ttl == 300.0
