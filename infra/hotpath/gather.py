"""Ordered concurrent gather: run independent awaitables at once, get results back in input order.

Why not plain ``asyncio.gather``: it has no concurrency limit, no overall deadline, and with
``return_exceptions=False`` it leaves the other awaitables running after the first failure (they
are neither cancelled nor awaited). ``gather_ordered`` cancels the rest by default and waits for
them to unwind, so a failed fan-out leaves nothing behind; or it captures each item's exception
in place when asked.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Iterable
from typing import Any, Literal, TypeVar, overload

__all__ = ["gather_ordered"]

T = TypeVar("T")

OnError = Literal["cancel", "capture"]


async def _limited(sem: asyncio.Semaphore, aw: Awaitable[T]) -> T:
    """Await ``aw`` while holding one slot of ``sem``; close it unstarted if cancelled while queued."""
    started = False
    try:
        async with sem:
            started = True
            return await aw
    finally:
        if not started and inspect.iscoroutine(aw):
            # Cancelled while waiting for a slot: close the coroutine so Python doesn't warn
            # "coroutine ... was never awaited" (an error under filterwarnings=error).
            aw.close()


@overload
async def gather_ordered(
    aws: Iterable[Awaitable[T]],
    *,
    limit: int | None = ...,
    timeout: float | None = ...,
    on_error: Literal["cancel"] = ...,
) -> list[T]: ...


@overload
async def gather_ordered(
    aws: Iterable[Awaitable[T]],
    *,
    limit: int | None = ...,
    timeout: float | None = ...,
    on_error: Literal["capture"],
) -> list[T | BaseException]: ...


async def gather_ordered(
    aws: Iterable[Awaitable[T]],
    *,
    limit: int | None = None,
    timeout: float | None = None,
    on_error: OnError = "cancel",
) -> list[T] | list[T | BaseException]:
    """Run ``aws`` concurrently and return their results in input order.

    ``limit``: at most this many run at once (coroutines beyond it start as slots free up; tasks and
    futures passed in are already running and are only awaited). ``timeout``: one deadline in seconds
    for the whole gather.

    ``on_error="cancel"`` (default): the first failure cancels every unfinished item, waits for them
    to unwind, and is raised (when several fail together, the one earliest in input order wins).
    On timeout the unfinished items are cancelled and ``TimeoutError`` is raised.

    ``on_error="capture"``: every item runs to completion; a failed item's slot holds its exception,
    and on timeout each unfinished item's slot holds a ``TimeoutError``. Nothing is raised except
    the caller's own cancellation.
    """
    _check(on_error, limit, timeout)
    items = list(aws)
    if not items:
        return []
    tasks = await _start(items, limit)
    when = asyncio.ALL_COMPLETED if on_error == "capture" else asyncio.FIRST_EXCEPTION
    try:
        _done, pending = await asyncio.wait(tasks, timeout=timeout, return_when=when)
    except BaseException:
        # Our caller was cancelled: take the children down with us.
        await _cancel_all(tasks)
        raise
    if on_error == "capture":
        return await _captured(tasks, pending, timeout)
    return await _results_or_first_failure(tasks, pending, timeout)


def _check(on_error: str, limit: int | None, timeout: float | None) -> None:
    if on_error not in ("cancel", "capture"):
        raise ValueError(f"on_error must be 'cancel' or 'capture', not {on_error!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, not {limit!r}")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, not {timeout!r}")


async def _start(items: list[Awaitable[Any]], limit: int | None) -> list[asyncio.Future[Any]]:
    """One task per item, behind a semaphore when ``limit`` is below the item count."""
    sem = asyncio.Semaphore(limit) if limit is not None and limit < len(items) else None
    tasks: list[asyncio.Future[Any]] = []
    try:
        for aw in items:
            tasks.append(asyncio.ensure_future(_limited(sem, aw) if sem is not None else aw))
    except BaseException:
        # A non-awaitable in the input: undo what was started, close what wasn't.
        for t in tasks:
            t.cancel()
        for aw in items[len(tasks) :]:
            if inspect.iscoroutine(aw):
                aw.close()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return tasks


async def _captured(
    tasks: list[asyncio.Future[Any]], pending: set[asyncio.Future[Any]], timeout: float | None
) -> list[Any]:
    """``on_error="capture"``: each slot holds its result, its exception or a ``TimeoutError``."""
    if pending:
        await _cancel_all(pending)
    out: list[Any] = []
    for t in tasks:
        if t in pending:
            out.append(TimeoutError(f"gather_ordered: item unfinished after {timeout}s"))
        elif t.cancelled():
            out.append(asyncio.CancelledError())
        else:
            exc = t.exception()
            out.append(exc if exc is not None else t.result())
    return out


async def _results_or_first_failure(
    tasks: list[asyncio.Future[Any]], pending: set[asyncio.Future[Any]], timeout: float | None
) -> list[Any]:
    """``on_error="cancel"``: the results, or (after cancelling the rest) the earliest failure in input
    order, or ``TimeoutError`` when items are still unfinished."""
    failed = [t for t in tasks if t.done() and (t.cancelled() or t.exception() is not None)]
    if failed or pending:
        await _cancel_all(tasks)
        if failed:
            first = failed[0]
            if first.cancelled():
                raise asyncio.CancelledError()
            exc = first.exception()
            assert exc is not None
            raise exc
        raise TimeoutError(
            f"gather_ordered: {len(pending)} of {len(tasks)} items unfinished after {timeout}s"
        )
    return [t.result() for t in tasks]


async def _cancel_all(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has unwound (their outcomes are retrieved and dropped)."""
    pending = [t for t in tasks if not t.done()]
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending)
    for t in tasks:
        if t.done() and not t.cancelled():
            t.exception()  # mark retrieved: no "exception was never retrieved" log
