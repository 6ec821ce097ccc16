"""Background warming (seed 001, PERF-001): fill caches with common items without delaying start-up.

``warm(items, fn)`` returns at once with a ``WarmHandle``; the calls run in the background (an
asyncio task when called inside a running loop, else a daemon thread), ``concurrency`` at a time,
after an optional ``delay`` so the app finishes starting first. A failing item is counted and
logged, never raised: warming is an optimisation, and its failure must not take the app down.

``warm_cache(items, fn, namespace=...)`` is the cache-filling form used by ``python -m infra warm``:
it skips items already cached under their key (``make_key(namespace, item)``, or the key a ``@cached``
function would use, see ``key``) and stores ``fn(item)`` there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from infra.cache import Cache

__all__ = ["WarmHandle", "WarmStats", "run_warm", "warm", "warm_cache"]

log = logging.getLogger("infra.hotpath.warm")

Progress = Callable[[int, int], None]  # (done, total)
T = TypeVar("T")

_RUNNING: set[asyncio.Task[Any]] = set()


@dataclass
class WarmStats:
    """What a warming run did: items ``ok``, ``failed``, ``skipped`` (already cached), of ``total``."""

    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)  # the first few, as "item: ExcType: message"

    @property
    def done(self) -> int:
        return self.ok + self.failed + self.skipped

    def to_dict(self) -> dict[str, int | float | list[str]]:
        return {**dataclasses.asdict(self), "seconds": round(self.seconds, 3)}


_MAX_ERRORS = 5


async def run_warm(
    items: Iterable[T],
    fn: Callable[[T], object],
    *,
    concurrency: int = 4,
    progress: Progress | None = None,
    skip: Callable[[Sequence[T]], Awaitable[set[int]] | set[int]] | None = None,
    stats: WarmStats | None = None,
) -> WarmStats:
    """Call ``fn(item)`` for each item, ``concurrency`` at a time, in the current loop; never raises
    for an item's failure. Sync ``fn`` runs in worker threads so the loop stays responsive.

    ``skip(items)`` returns the indexes to leave out (already warm). ``progress(done, total)`` is
    called after each item.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, not {concurrency!r}")
    todo = list(items)
    st = stats if stats is not None else WarmStats()
    st.total = len(todo)
    t0 = time.perf_counter()
    skipped: set[int] = set()
    if skip is not None and todo:
        got = skip(todo)
        skipped = set(await got) if inspect.isawaitable(got) else set(got)
    st.skipped = len(skipped)
    if progress is not None:
        progress(st.done, st.total)
    is_async = inspect.iscoroutinefunction(fn)
    sem = asyncio.Semaphore(concurrency)
    failures_logged = False

    async def one(item: Any) -> None:
        nonlocal failures_logged
        async with sem:
            try:
                if is_async:
                    await cast("Awaitable[object]", fn(item))
                else:
                    result = await asyncio.to_thread(fn, item)
                    if inspect.isawaitable(result):
                        await result
                st.ok += 1
            except Exception as exc:
                st.failed += 1
                if len(st.errors) < _MAX_ERRORS:
                    st.errors.append(f"{str(item)[:60]!r}: {type(exc).__name__}: {exc}")
                if not failures_logged:  # log once per run; the count is in the stats
                    failures_logged = True
                    log.warning(
                        "warming: %r failed (%s: %s); further failures are only counted",
                        str(item)[:60],
                        type(exc).__name__,
                        exc,
                    )
            if progress is not None:
                progress(st.done, st.total)

    await asyncio.gather(*(one(item) for i, item in enumerate(todo) if i not in skipped))
    st.seconds = time.perf_counter() - t0
    return st


class WarmHandle:
    """A running warm-up: ``stats`` (live), ``done()``, ``wait(timeout)``, ``await handle``, ``cancel()``."""

    def __init__(self, stats: WarmStats) -> None:
        self.stats = stats
        self._task: asyncio.Task[WarmStats] | None = None
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()
        self._cancel = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_task: asyncio.Task[WarmStats] | None = None

    def done(self) -> bool:
        """True once every item was tried (or the run was cancelled)."""
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block the calling thread until done (don't call from the event loop running it)."""
        return self._finished.wait(timeout)

    def cancel(self) -> None:
        """Stop warming; items already running finish."""
        self._cancel.set()
        if self._task is not None:
            self._task.cancel()
        elif self._loop is not None and self._thread_task is not None:
            # RuntimeError: the thread's loop already closed, nothing left to cancel.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._thread_task.cancel)

    def __await__(self) -> Any:
        if self._task is not None:
            return self._wait_task().__await__()
        return asyncio.get_running_loop().run_in_executor(None, self._finished.wait).__await__()

    async def _wait_task(self) -> WarmStats:
        assert self._task is not None
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            if not self._task.cancelled():
                raise
        return self.stats


def warm(
    items: Iterable[T],
    fn: Callable[[T], object],
    *,
    concurrency: int = 4,
    delay: float = 0.0,
    progress: Progress | None = None,
    skip: Callable[[Sequence[T]], Awaitable[set[int]] | set[int]] | None = None,
) -> WarmHandle:
    """Start warming in the background and return at once (never blocks start-up).

    Inside a running event loop this schedules an asyncio task on it; elsewhere it starts a daemon
    thread with its own loop. ``delay`` seconds pass before the first call (seed 001 waits 5 s for
    the app to be ready). ``items`` is materialised now, so a generator is consumed once.
    """
    todo = list(items)
    stats = WarmStats(total=len(todo))
    handle = WarmHandle(stats)

    async def main() -> WarmStats:
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            if handle._cancel.is_set():
                return stats
            return await run_warm(
                todo, fn, concurrency=concurrency, progress=progress, skip=skip, stats=stats
            )
        except Exception as exc:  # fail open: a broken warm-up is logged, never raised into the app
            log.warning("warming stopped: %s: %s", type(exc).__name__, exc)
            return stats
        finally:
            handle._finished.set()

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        task = loop.create_task(main(), name="infra-warm")
        # The loop keeps only weak references to tasks: hold one so a fire-and-forget warm(...)
        # (handle dropped) isn't garbage-collected mid-run (see the asyncio.create_task docs).
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)
        handle._task = task
        return handle

    def thread_main() -> None:
        runner = asyncio.new_event_loop()
        task = runner.create_task(main(), name="infra-warm")
        handle._thread_task = task
        handle._loop = runner
        try:
            runner.run_until_complete(task)
        except BaseException as exc:  # cancelled via cancel()
            log.debug("warming thread ended: %r", exc)
        finally:
            handle._finished.set()
            runner.close()

    handle._thread = threading.Thread(target=thread_main, name="infra-warm", daemon=True)
    handle._thread.start()
    return handle


@dataclass(frozen=True)
class _Item:
    key: str
    text: str

    def __str__(self) -> str:  # error lines show the phrase, not the hash
        return self.text


def _cache_skip(cache: Cache, namespace: str, keys: list[str]) -> Callable[[Sequence[_Item]], set[int]]:
    def skip(_items: Sequence[_Item]) -> set[int]:
        from infra.cache import MISSING

        try:
            found = cache.get_many(namespace, keys)
        except Exception as exc:  # fail open: warm everything
            log.warning("warming: cache lookup failed (%s: %s); warming every item", type(exc).__name__, exc)
            return set()
        return {i for i, k in enumerate(keys) if k in found and found[k] is not MISSING}

    return skip


def warm_cache(
    items: Iterable[str],
    fn: Callable[[str], object],
    *,
    namespace: str,
    cache: Cache | None = None,
    ttl: float | None = None,
    concurrency: int = 4,
    force: bool = False,
    progress: Progress | None = None,
    background: bool = True,
    delay: float = 0.0,
    key: Callable[[str], str] | None = None,
) -> WarmHandle | WarmStats:
    """Store ``fn(item)`` under ``key(item)`` for each item not cached yet.

    ``key`` defaults to ``make_key(namespace, item)`` (read back with ``cache.get(namespace,
    make_key(namespace, item))``); pass ``cached(namespace=...)(fn).cache_key`` to fill the entries a
    ``@cached`` function looks up, as ``python -m infra warm`` does. With ``background=True``
    (default) this is ``warm(...)`` and returns a handle; ``background=False`` runs to completion in
    this thread (no running loop allowed) and returns the stats, as the CLI does.
    """
    from infra.cache import get_cache, make_key

    key_of = key if key is not None else (lambda text: make_key(namespace, text))
    todo = [_Item(key=key_of(text), text=text) for text in items]
    store = cache if cache is not None else get_cache()
    keys = [it.key for it in todo]

    # Each entry records what computing it cost, so later hits count compute_seconds_saved (issue 16).
    async def fill_async(item: _Item) -> None:
        t0 = time.perf_counter()
        value = await cast("Awaitable[object]", fn(item.text))
        await store.aset(namespace, item.key, value, ttl=ttl, cost=time.perf_counter() - t0)

    def fill_sync(item: _Item) -> None:
        t0 = time.perf_counter()
        value = fn(item.text)
        store.set(namespace, item.key, value, ttl=ttl, cost=time.perf_counter() - t0)

    filler: Callable[[_Item], object] = fill_async if inspect.iscoroutinefunction(fn) else fill_sync
    skip = None if force else _cache_skip(store, namespace, keys)
    if background:
        return warm(todo, filler, concurrency=concurrency, delay=delay, progress=progress, skip=skip)
    return asyncio.run(run_warm(todo, filler, concurrency=concurrency, progress=progress, skip=skip))
