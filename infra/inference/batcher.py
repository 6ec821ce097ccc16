"""Dynamic micro-batching: coalesce concurrent single-item calls into one batched model call.

A CPU embedding model costs about as much for 16 texts in one forward pass as for 3 alone; 16
concurrent requests served one by one waste most of it. ``MicroBatcher`` queues items from any
thread or event loop, and one worker thread calls ``fn(items)`` with up to ``max_batch_size`` of
them at a time, handing each caller its own result or exception.

When a batch goes (the semantics of TF-Serving's ``batch_timeout_micros`` and Triton's
``max_queue_delay_microseconds``): the wait window opens when the first item of a batch is
queued, not on a clock tick; the batch goes as soon as it is full or that first item has waited
``max_wait_ms``, whichever comes first. So an idle batcher costs nothing (no polling, no timer
running while the queue is empty), a lone request waits at most ``max_wait_ms`` for company, and
items that queued while the worker was busy already waited: they go the moment it is free.
``max_wait_ms=0`` never waits (Triton's default): batches form only from what piled up during
the previous call.

Errors: if a batched call raises, each item is retried alone (``isolate_errors``) so one bad
input fails only its own caller. A full queue raises ``BackpressureError`` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypedDict, TypeVar

from infra.config._switch import part_metrics
from infra.config.sections.runtime import BatchingConfig
from infra.errors import BackpressureError

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["BatcherStats", "BatchingOverrides", "MicroBatcher"]

log = logging.getLogger("infra.inference")

# Batch sizes are counts, not seconds: powers of two up to well past any sensible max_batch_size.
_SIZE_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)

T = TypeVar("T")
R = TypeVar("R")


class BatchingOverrides(TypedDict, total=False):
    """Keywords that override single fields of the ``batching`` section (None: the section's value)."""

    max_batch_size: int | None
    max_wait_ms: float | None
    max_queue: int | None


def _overridden(section: BatchingConfig, overrides: BatchingOverrides) -> BatchingConfig:
    """``section`` with the given fields replaced, checked by its Specs as any section is (a
    ``ConfigError``, which is a ``ValueError``, naming each bad setting)."""
    given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(section, **given) if given else section


class _Sink:
    """Results for one caller (one or many items); the worker thread is the only writer."""

    __slots__ = ("errors", "remaining", "results")

    def __init__(self, n: int) -> None:
        self.results: list[Any] = [None] * n
        self.errors: list[BaseException | None] = [None] * n
        self.remaining = n

    def deliver(self, out: list[tuple[int, bool, Any]]) -> None:
        for index, ok, value in out:
            if ok:
                self.results[index] = value
            else:
                self.errors[index] = value
        self.remaining -= len(out)
        if self.remaining <= 0:
            self._wake()

    def _wake(self) -> None:
        raise NotImplementedError


class _SyncSink(_Sink):
    """Results for one blocking caller."""

    __slots__ = ("done",)

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.done = threading.Event()

    def _wake(self) -> None:
        self.done.set()


class _AsyncSink(_Sink):
    """Results for one awaiting caller: delivered onto its own loop with one thread-safe call."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, n: int) -> None:
        super().__init__(n)
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()

    def _wake(self) -> None:
        # RuntimeError: the caller's loop is closed, nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class _Pending:
    __slots__ = ("index", "item", "sink", "t")

    def __init__(self, item: Any, sink: _Sink, index: int, t: float) -> None:
        self.item = item
        self.sink = sink
        self.index = index
        self.t = t


class BatcherStats:
    """Counters a caller can read without the metrics backend."""

    __slots__ = ("batches", "items", "max_batch_seen", "rejected")

    def __init__(self) -> None:
        self.batches = 0
        self.items = 0
        self.rejected = 0
        self.max_batch_seen = 0

    @property
    def mean_batch_size(self) -> float:
        return self.items / self.batches if self.batches else 0.0

    def to_dict(self) -> dict[str, float]:
        counts: dict[str, float] = {name: getattr(self, name) for name in self.__slots__}
        return {**counts, "mean_batch_size": round(self.mean_batch_size, 3)}


class MicroBatcher(Generic[T, R]):
    """Batch concurrent ``submit``/``asubmit`` calls into ``fn(list_of_items) -> sequence_of_results``.

    ``fn`` is synchronous and runs on the batcher's own worker thread (one call at a time); it must
    return one result per item, in order. Usable from many threads and event loops at once.
    ``config`` is perf_config's ``batching`` section (default: its built-in values); the keywords
    override single fields of it.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        config: BatchingConfig | None = None,
        *,
        isolate_errors: bool = True,
        name: str = "default",
        **overrides: Unpack[BatchingOverrides],
    ) -> None:
        self._use(_overridden(config if config is not None else BatchingConfig(), overrides))
        self.fn = fn
        self.name = name
        self.isolate_errors = isolate_errors
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Pending] = deque()
        self._closed = False
        self._worker: threading.Thread | None = None
        self.stats = BatcherStats()
        reg = part_metrics()  # records nothing while metrics.enabled is false; ``stats`` counts either way
        self._m_size = reg.histogram(
            "infra_batch_size",
            "Items per batched model call.",
            labelnames=("batcher",),
            buckets=_SIZE_BUCKETS,
        ).labels(name)
        self._m_wait = reg.histogram(
            "infra_batch_wait_seconds",
            "Time the first item of a batch waited before the call.",
            labelnames=("batcher",),
        ).labels(name)
        self._m_call = reg.histogram(
            "infra_batch_call_duration_seconds",
            "Duration of the batched model call.",
            labelnames=("batcher",),
        ).labels(name)
        self._m_depth = reg.gauge(
            "infra_batch_queue_depth", "Items waiting for a batch.", labelnames=("batcher",)
        ).labels(name)
        self._m_rejected = reg.counter(
            "infra_batch_rejected_total", "Items refused because the queue was full.", labelnames=("batcher",)
        ).labels(name)

    # -- settings --------------------------------------------------------------------------------

    def _use(self, section: BatchingConfig) -> None:
        """Take ``section``'s settings (the worker reads the three plain attributes)."""
        self._settings = section
        self._max_batch_size = section.max_batch_size
        self._max_wait = section.max_wait_ms / 1000.0
        self._max_queue = section.max_queue

    @property
    def max_batch_size(self) -> int:
        return self._max_batch_size

    @property
    def max_wait_ms(self) -> float:
        return self._max_wait * 1000.0

    @property
    def max_queue(self) -> int:
        return self._max_queue

    def configure(self, **overrides: Unpack[BatchingOverrides]) -> None:
        """Change settings at run time; the next batch uses them (a batch being collected re-reads them).
        A bad value raises (a ``ValueError``) and leaves every setting as it was."""
        with self._cond:
            self._use(_overridden(self._settings, overrides))
            self._cond.notify_all()

    # -- submitting ------------------------------------------------------------------------------

    def _enqueue(self, items: Sequence[T], sink: _Sink) -> None:
        n = len(items)
        now = time.monotonic()
        with self._cond:
            if self._closed:
                raise RuntimeError(f"MicroBatcher {self.name!r} is closed")
            q = self._queue
            if len(q) + n > self._max_queue:
                self.stats.rejected += n
                self._m_rejected.inc(n)
                raise BackpressureError(
                    f"MicroBatcher {self.name!r}: queue full ({len(q)} of max_queue={self._max_queue} "
                    f"items waiting, {n} more offered); slow down or raise batching.max_queue"
                )
            was_empty = not q
            for i, item in enumerate(items):
                q.append(_Pending(item, sink, i, now))
            if self._worker is None:
                self._start_worker()
            # Wake the worker only when it can act: a first item opens a window, a full batch closes it.
            if was_empty or len(q) >= self._max_batch_size:
                self._cond.notify()
            self._m_depth.set(len(q))

    @staticmethod
    def _outcome(sink: _Sink) -> list[Any]:
        for err in sink.errors:
            if err is not None:
                raise err
        return sink.results

    def submit(self, item: T) -> R:
        """Queue ``item`` and block until its result (raises its exception). Not from the event loop."""
        sink = _SyncSink(1)
        self._enqueue((item,), sink)
        sink.done.wait()
        return self._outcome(sink)[0]  # type: ignore[no-any-return]

    def submit_many(self, items: Sequence[T]) -> list[R]:
        """Queue ``items`` together and block until all are done (raises the first failure, in order)."""
        if not items:
            return []
        sink = _SyncSink(len(items))
        self._enqueue(items, sink)
        sink.done.wait()
        return self._outcome(sink)

    async def asubmit(self, item: T) -> R:
        """Queue ``item`` and await its result without blocking the event loop."""
        sink = _AsyncSink(asyncio.get_running_loop(), 1)
        self._enqueue((item,), sink)
        await sink.future
        return self._outcome(sink)[0]  # type: ignore[no-any-return]

    async def asubmit_many(self, items: Sequence[T]) -> list[R]:
        """Async ``submit_many``."""
        if not items:
            return []
        sink = _AsyncSink(asyncio.get_running_loop(), len(items))
        self._enqueue(items, sink)
        await sink.future
        return self._outcome(sink)

    # -- worker ----------------------------------------------------------------------------------

    def _start_worker(self) -> None:
        self._worker = threading.Thread(target=self._work, name=f"infra-batcher-{self.name}", daemon=True)
        self._worker.start()

    def _next_batch(self) -> list[_Pending] | None:
        cond, q = self._cond, self._queue
        with cond:
            while not q:
                if self._closed:
                    return None
                cond.wait()
            while not self._closed and len(q) < self._max_batch_size:
                remaining = q[0].t + self._max_wait - time.monotonic()
                if remaining <= 0:
                    break
                cond.wait(remaining)
            n = min(len(q), self._max_batch_size)
            batch = [q.popleft() for _ in range(n)]
            self._m_depth.set(len(q))
            return batch

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _call(self, items: list[Any]) -> list[Any]:
        out = self.fn(items)
        if len(out) != len(items):
            raise ValueError(
                f"MicroBatcher {self.name!r}: fn returned {len(out)} results for {len(items)} items"
            )
        return list(out)

    def _run(self, batch: list[_Pending]) -> None:
        items = [p.item for p in batch]
        t0 = time.monotonic()
        self._m_wait.observe(t0 - batch[0].t)
        self._m_size.observe(len(items))
        st = self.stats
        st.batches += 1
        st.items += len(items)
        if len(items) > st.max_batch_seen:
            st.max_batch_seen = len(items)
        outcomes: list[tuple[bool, Any]]
        try:
            outcomes = [(True, r) for r in self._call(items)]
        except BaseException as exc:
            if self.isolate_errors and len(items) > 1:
                outcomes = []
                for item in items:  # find the bad input: only its caller gets the error
                    try:
                        outcomes.append((True, self._call([item])[0]))
                    except BaseException as one_exc:
                        outcomes.append((False, one_exc))
            else:
                outcomes = [(False, exc)] * len(items)
        self._m_call.observe(time.monotonic() - t0)
        by_sink: dict[int, tuple[_Sink, list[tuple[int, bool, Any]]]] = {}
        for p, (ok, value) in zip(batch, outcomes, strict=True):
            entry = by_sink.get(id(p.sink))
            if entry is None:
                entry = by_sink[id(p.sink)] = (p.sink, [])
            entry[1].append((p.index, ok, value))
        for sink, out in by_sink.values():
            sink.deliver(out)

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Refuse new items, finish the queued ones (without waiting for company), stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            worker = self._worker
        if wait and worker is not None and worker is not threading.current_thread():
            worker.join(timeout)

    @property
    def queued(self) -> int:
        """Items waiting for a batch (not counting the batch being called)."""
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> MicroBatcher[T, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"MicroBatcher({self.name!r}, max_batch_size={self._max_batch_size}, "
            f"max_wait_ms={self.max_wait_ms:g}, max_queue={self._max_queue}, queued={len(self._queue)})"
        )
