"""A time-boxed in-process memo for search results (seed 001, PERF-002).

Repeated identical queries within a session (the same context retrieved twice in one turn, a user
repeating themselves) skip the vector search. Bounded by ``max_entries`` (least recently used goes
first) and by ``ttl``: an entry is never returned once ``ttl`` seconds have passed since it was
stored, measured on the monotonic clock, so wall-clock jumps can't resurrect a stale result.

Every hit hands back a value of its own, equal to what was stored (issue 14): a caller that edits a
result doesn't change what the next caller gets. Immutable values are shared; plain containers come back
through ``marshal``, anything else through ``copy.deepcopy`` (see ``infra.cache.values``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, ParamSpec, TypeVar, cast, overload

from infra.cache.values import Thaw, freeze_plain

__all__ = ["TimedMemo", "timed_memo"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
P = ParamSpec("P")
R = TypeVar("R")
D = TypeVar("D")

_MISS: Any = object()


class TimedMemo(Generic[K, V]):
    """A thread-safe TTL + LRU map with get-or-compute helpers (sync and async).

    ``aget_or_compute`` is single-flight per key inside one event loop: concurrent callers for
    the same key share one computation. Exceptions are never memoised.
    """

    def __init__(
        self,
        *,
        ttl: float,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be > 0 seconds, not {ttl!r}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, not {max_entries!r}")
        self.ttl = float(ttl)
        self.max_entries = max_entries
        self._clock = clock
        self._data: OrderedDict[K, tuple[float, Any, Thaw]] = OrderedDict()  # (expires, stored, thaw)
        self._lock = threading.Lock()
        self._inflight: dict[K, asyncio.Future[tuple[Any, Thaw]]] = {}
        self.hits = 0
        self.misses = 0

    @overload
    def get(self, key: K) -> V | None: ...

    @overload
    def get(self, key: K, default: D) -> V | D: ...

    def get(self, key: K, default: D | None = None) -> V | D | None:
        """The live value for ``key``, or ``default`` (expired entries are dropped on the way)."""
        now = self._clock()
        with self._lock:
            entry = self._data.get(key)
            if entry is not None:
                if entry[0] > now:
                    self._data.move_to_end(key)
                    self.hits += 1
                    how = entry[2]
                    value: V = entry[1] if how is None else how(entry[1])  # no cast() call on a hit
                    return value
                del self._data[key]
            self.misses += 1
            return default

    def set(self, key: K, value: V) -> None:
        """Store ``value`` for ``ttl`` seconds, evicting the least recently used beyond ``max_entries``.

        What is kept is a copy (or the value itself when immutable): later edits to ``value`` don't reach it.
        """
        self._put(key, freeze_plain(value))

    def _put(self, key: K, frozen: tuple[Any, Thaw]) -> None:
        expires = self._clock() + self.ttl
        with self._lock:
            self._data[key] = (expires, frozen[0], frozen[1])
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def invalidate(self, key: K) -> None:
        """Forget ``key`` (e.g. after the data behind it changed)."""
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        now = self._clock()
        with self._lock:
            return sum(1 for exp, _, _ in self._data.values() if exp > now)

    def get_or_compute(self, key: K, compute: Callable[[], V]) -> V:
        """The live value for ``key``, else ``compute()`` stored and returned."""
        value = self.get(key, _MISS)
        if value is not _MISS:
            return cast(V, value)
        computed = compute()
        self.set(key, computed)
        return computed

    async def aget_or_compute(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        """Async ``get_or_compute``; concurrent misses for one key await a single computation."""
        value = self.get(key, _MISS)
        if value is not _MISS:
            return cast(V, value)
        fut = self._inflight.get(key)
        if fut is not None and fut.get_loop() is asyncio.get_running_loop():
            stored, how = await asyncio.shield(fut)  # the leader's result; each waiter gets its own copy
            return cast(V, stored if how is None else how(stored))
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            computed = await compute()
        except asyncio.CancelledError:
            fut.cancel()  # waiters see the cancellation and may retry
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: no "exception was never retrieved" log without waiters
            raise
        else:
            frozen = freeze_plain(computed)
            self._put(key, frozen)
            fut.set_result(frozen)
            return computed
        finally:
            if self._inflight.get(key) is fut:
                del self._inflight[key]


def _make_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
    return (args, tuple(sorted(kwargs.items()))) if kwargs else args


def timed_memo(*, ttl: float, max_entries: int = 1024) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a sync or async function with a ``TimedMemo`` keyed by its (hashable) arguments.

    The memo is reachable as ``fn.memo`` (to ``invalidate``/``clear``).
    """

    def deco(fn: Callable[P, R]) -> Callable[P, R]:
        memo: TimedMemo[Hashable, Any] = TimedMemo(ttl=ttl, max_entries=max_entries)
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                key = _make_key(args, kwargs)
                return await memo.aget_or_compute(key, lambda: fn(*args, **kwargs))

            awrapper.memo = memo  # type: ignore[attr-defined]
            return cast(Callable[P, R], awrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            key = _make_key(args, kwargs)
            return cast(R, memo.get_or_compute(key, lambda: fn(*args, **kwargs)))

        wrapper.memo = memo  # type: ignore[attr-defined]
        return wrapper

    return deco
