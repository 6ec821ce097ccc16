"""warm / warm_cache: background, never blocks start-up, bounded concurrency, failures counted not raised,
cache filled under make_key(namespace, item) with already-cached items skipped (real SQLite cache)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.hotpath import WarmStats, warm, warm_cache


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Any]:
    from infra.cache import Cache, CacheConfig

    c = Cache(CacheConfig(path=str(tmp_path / "cache.db")), export_metrics=False)
    yield c
    c.close()


async def test_warm_returns_before_any_item_runs_and_finishes_in_the_background() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    done: list[str] = []

    async def synth(phrase: str) -> None:
        started.set()
        await release.wait()
        done.append(phrase)

    handle = warm(["hello", "goodbye"], synth, concurrency=2)
    # Still inside the caller's turn: nothing ran yet, start-up goes on.
    assert not started.is_set() and not handle.done()
    await asyncio.wait_for(started.wait(), 5)
    release.set()
    stats = await asyncio.wait_for(handle, 5)
    assert sorted(done) == ["goodbye", "hello"]
    assert stats.ok == 2 and stats.failed == 0 and handle.done()


async def test_concurrency_bounds_parallel_calls() -> None:
    running = 0
    peak = 0

    async def synth(_: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.002)
        running -= 1

    stats = await warm(range(12), synth, concurrency=3)
    assert stats.ok == 12 and peak == 3


async def test_failures_are_counted_and_logged_once_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def synth(phrase: str) -> None:
        if phrase.startswith("bad"):
            raise RuntimeError(f"tts refused {phrase}")

    with caplog.at_level(logging.WARNING, logger="infra.hotpath.warm"):
        stats = await warm(["ok1", "bad1", "bad2", "ok2"], synth, concurrency=1)
    assert (stats.ok, stats.failed) == (2, 2)
    assert len(stats.errors) == 2 and "tts refused bad1" in stats.errors[0]
    assert sum("warming" in r.getMessage() for r in caplog.records) == 1


async def test_delay_postpones_the_first_call_and_cancel_stops_it() -> None:
    calls: list[int] = []

    async def synth(i: int) -> None:
        calls.append(i)

    handle = warm([1, 2], synth, delay=30)
    await asyncio.sleep(0.01)
    assert calls == []
    handle.cancel()
    stats = await asyncio.wait_for(handle, 5)
    assert calls == [] and stats.done == 0


def test_from_sync_code_it_runs_on_a_daemon_thread_and_calls_sync_fns_off_the_caller() -> None:
    callers: set[int] = set()

    def synth(phrase: str) -> str:
        callers.add(threading.get_ident())
        time.sleep(0.001)
        return phrase

    handle = warm([f"p{i}" for i in range(6)], synth, concurrency=2)
    assert handle.wait(10)
    assert handle.stats.ok == 6
    assert threading.get_ident() not in callers


def test_progress_callback_reaches_total() -> None:
    seen: list[tuple[int, int]] = []
    handle = warm(["a", "b", "c"], lambda s: s, progress=lambda done, total: seen.append((done, total)))
    assert handle.wait(10)
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)


def test_warm_cache_stores_values_under_make_key_and_skips_cached_items(cache: Any) -> None:
    from infra.cache import make_key

    calls: list[str] = []

    def synth(phrase: str) -> bytes:
        calls.append(phrase)
        return f"audio:{phrase}".encode()

    cache.set("tts", make_key("tts", "hello"), b"already")
    stats = warm_cache(
        ["hello", "take a breath", "you are safe"], synth, namespace="tts", cache=cache, background=False
    )
    assert isinstance(stats, WarmStats)
    assert (stats.ok, stats.skipped, stats.failed) == (2, 1, 0)
    assert sorted(calls) == ["take a breath", "you are safe"]
    assert cache.get("tts", make_key("tts", "take a breath")) == b"audio:take a breath"
    assert cache.get("tts", make_key("tts", "hello")) == b"already"

    again = warm_cache(["hello", "take a breath"], synth, namespace="tts", cache=cache, background=False)
    assert isinstance(again, WarmStats) and again.skipped == 2 and len(calls) == 2

    forced = warm_cache(["hello"], synth, namespace="tts", cache=cache, background=False, force=True)
    assert isinstance(forced, WarmStats) and forced.ok == 1
    assert cache.get("tts", make_key("tts", "hello")) == b"audio:hello"


async def test_warm_cache_in_the_background_with_an_async_fn(cache: Any) -> None:
    from infra.cache import make_key

    async def synth(phrase: str) -> str:
        await asyncio.sleep(0)
        return phrase.upper()

    handle = warm_cache(["a", "b"], synth, namespace="tts", cache=cache)
    assert not isinstance(handle, WarmStats)
    stats = await asyncio.wait_for(handle, 10)
    assert stats.ok == 2
    assert await cache.aget("tts", make_key("tts", "b")) == "B"


async def test_fire_and_forget_warm_survives_garbage_collection() -> None:
    """warm(...) without keeping the handle still runs to the end (the task is strongly held)."""
    import gc

    done = asyncio.Event()
    seen: list[str] = []

    async def synth(phrase: str) -> None:
        await asyncio.sleep(0)
        seen.append(phrase)
        if len(seen) == 3:
            done.set()

    warm(["a", "b", "c"], synth, concurrency=1)
    gc.collect()
    await asyncio.wait_for(done.wait(), 5)
    assert sorted(seen) == ["a", "b", "c"]
