"""``timed``: one timer for ``with``, ``async with`` and decorators on every kind of function.

Records into ``infra_operation_duration_seconds{operation=...}`` and counts exceptions in
``infra_operation_errors_total{operation=...}``. What is timed:

- ``with`` / ``async with``: the block, including the time spent awaiting inside it.
- ``def``: the call. ``async def``: the *awaited* time, from the first step to the result; wrapping the
  coroutine function (not timing coroutine creation) is what prometheus_client gets wrong, recording
  ~1 µs (prometheus/client_python#535).
- generator / async generator functions: from the first ``next()`` to exhaustion or close, so a
  streaming response is timed end to end, not just to the creation of the generator.

An ``Exception`` raised out of the timed code is counted as an error and re-raised unchanged; a
``BaseException`` that is not an ``Exception`` (cancellation, ``GeneratorExit`` from closing a stream
early, KeyboardInterrupt) still records the duration but is not an error.

Each ``with timed(...)`` creates a small object holding the start time, so concurrent and nested uses
(threads, asyncio tasks) never share state; the metric children are resolved once per operation.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncGenerator, Callable, Generator
from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ._core import PENDING_FOLD_AT

if TYPE_CHECKING:
    from ._core import CounterChild, HistogramChild

__all__ = ["Timer", "timer_class"]

_log = logging.getLogger("infra.metrics")
_failure_logged = False  # log a recording failure once per process, not once per call

F = TypeVar("F", bound=Callable[..., Any])


class Timer:
    """What ``timed(...)`` returns: a context manager (sync and async) and a decorator.

    Each operation gets its own subclass (made once by ``timer_class``) whose class attributes hold
    the resolved metric children, so ``timed("op")`` constructs an instance with no arguments and no
    Python ``__init__``: the C constructor alone, about half the cost of a slotted object with an
    ``__init__``. ``__exit__`` only appends the duration to the child's pending list, folded into the
    sketch in sorted batches (``HistogramChild.note``): together about 0.35x of prometheus_client's
    ``Histogram.time()`` (bench/bench_metrics.py). The only per-use state is the
    start time, so concurrent uses (threads, tasks) never share anything; one Timer object times one
    block at a time (nest by calling ``timed(...)`` again, as ``with`` statements normally do).
    """

    __slots__ = ("_t0",)
    _h: ClassVar[HistogramChild]
    _pending: ClassVar[list[float]]  # the histogram child's not-yet-folded durations
    _e: ClassVar[CounterChild | None]

    def __enter__(self) -> Timer:
        self._t0 = perf_counter()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        v = perf_counter() - self._t0
        if et is not None:
            _record(self._h, self._e, v, issubclass(et, Exception), observe=False)
        # HistogramChild.note inlined (the call is a fifth of the timer's cost): append the duration,
        # fold a full batch. Nothing of ours may replace what the block raised or returned (fail open).
        p = self._pending
        p.append(v)
        if len(p) >= PENDING_FOLD_AT:
            try:
                self._h.fold_pending()
            except Exception:
                _record_failed(self._h)

    async def __aenter__(self) -> Timer:
        self._t0 = perf_counter()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(et, ev, tb)

    def __call__(self, func: F) -> F:
        """Decorate ``func`` (sync, ``async def``, generator or async generator function)."""
        import inspect  # lazy: ~4 ms of cold import, needed only when decorating

        h, e = self._h, self._e
        if inspect.isasyncgenfunction(func):
            return _wrap_asyncgen(func, h, e)  # type: ignore[return-value]
        if inspect.iscoroutinefunction(func):
            return _wrap_coroutine(func, h, e)  # type: ignore[return-value]
        if inspect.isgeneratorfunction(func):
            return _wrap_generator(func, h, e)  # type: ignore[return-value]
        if not callable(func):
            raise TypeError(f"timed(...) decorates a function, got {type(func).__name__}")
        return _wrap_function(func, h, e)  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"<Timer {self._h.metric.name}{{{self._h.label_text}}}>"


def timer_class(hist: HistogramChild, errors: CounterChild | None) -> type[Timer]:
    """The Timer subclass bound to these children (callers cache it: one per operation)."""
    return type("Timer", (Timer,), {"__slots__": (), "_h": hist, "_pending": hist.pending, "_e": errors})


def _record(
    h: HistogramChild, e: CounterChild | None, seconds: float, failed: bool, observe: bool = True
) -> None:
    """Count the error and record the duration; never raise (the timed code's outcome must stand)."""
    try:
        if failed and e is not None:
            e.inc()
        if observe:
            h.note(seconds)
    except Exception:
        _record_failed(h)


def _record_failed(h: HistogramChild) -> None:
    global _failure_logged
    if not _failure_logged:
        _failure_logged = True
        _log.exception("timed: recording %s failed; the timed code is unaffected", h.metric.name)


def _wrap_function(func: Callable[..., Any], h: HistogramChild, e: CounterChild | None) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = perf_counter()
        failed = False
        try:
            return func(*args, **kwargs)
        except Exception:
            failed = True
            raise
        finally:
            _record(h, e, perf_counter() - t0, failed)

    return wrapper


def _wrap_coroutine(
    func: Callable[..., Any], h: HistogramChild, e: CounterChild | None
) -> Callable[..., Any]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = perf_counter()
        failed = False
        try:
            return await func(*args, **kwargs)
        except Exception:
            failed = True
            raise
        finally:
            _record(h, e, perf_counter() - t0, failed)

    return wrapper


def _wrap_generator(
    func: Callable[..., Any], h: HistogramChild, e: CounterChild | None
) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        gen = func(*args, **kwargs)
        t0 = perf_counter()
        failed = False
        try:
            # `yield from` forwards send(), throw() and close() exactly (PEP 380).
            return (yield from gen)
        except Exception:
            failed = True
            raise
        finally:
            _record(h, e, perf_counter() - t0, failed)

    return wrapper


def _wrap_asyncgen(func: Callable[..., Any], h: HistogramChild, e: CounterChild | None) -> Callable[..., Any]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        agen = func(*args, **kwargs)
        t0 = perf_counter()
        failed = False
        try:
            # There is no `yield from` for async generators: forward asend/athrow/aclose by hand.
            try:
                item = await agen.__anext__()
            except StopAsyncIteration:
                return
            while True:
                try:
                    sent = yield item
                except GeneratorExit:
                    await agen.aclose()
                    raise
                except BaseException as exc:
                    try:
                        item = await agen.athrow(exc)
                    except StopAsyncIteration:
                        return
                else:
                    try:
                        item = await agen.asend(sent)
                    except StopAsyncIteration:
                        return
        except Exception:
            failed = True
            raise
        finally:
            _record(h, e, perf_counter() - t0, failed)

    return wrapper
