"""Running coroutines from sync code: a private daemon loop, and one idle loop per calling thread.

asyncpg has no sync API and its connections belong to the loop that opened them. Two ways to serve a
threaded worker's sync call:

* ``LoopThread``: one event loop running in a daemon thread; the caller submits with
  ``asyncio.run_coroutine_threadsafe`` and blocks on the future. Two thread hand-offs per call (the caller
  wakes the loop, the loop wakes the caller): on a busy 2-core machine that is ~40-80 µs per call.
* ``ThreadLoops``: each calling thread owns a private, non-running loop (and its own connection) and drives
  it with ``run_until_complete``: no hand-off at all, the caller's thread does the I/O itself. This is the
  faster hit path (see bench/bench_backends.py) and the default; ``LoopThread`` still runs what must live
  on a loop between calls (LISTEN, maintenance) and serves callers whose thread already runs a loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread", "ThreadLoops"]

T = TypeVar("T")


class LoopThread:
    """An event loop in a daemon thread, started on first use; ``stop()`` runs a closer then ends it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name=self._name, daemon=True)
                self._thread.start()
                ready.wait(5.0)
                self._loop = loop
            return self._loop

    @property
    def started(self) -> bool:
        return self._loop is not None

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the private loop and wait for its result (from any thread but the loop's own)."""
        return self.submit(coro).result(timeout)

    def stop(
        self, closer: Callable[[], Coroutine[Any, Any, Any]] | None = None, timeout: float = 5.0
    ) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if closer is not None and not loop.is_closed():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(closer(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()


class _OwnLoop:
    __slots__ = ("__weakref__", "lock", "loop", "thread")

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.lock = threading.Lock()
        self.thread = weakref.ref(threading.current_thread())


class ThreadLoops:
    """One private idle loop per calling thread, driven with ``run_until_complete`` by that thread.

    Every loop is also kept in a registry so ``close_all`` can close their connections from another thread
    (under the loop's lock, so never while its owner is inside it), and loops of threads that have ended are
    closed when the next thread registers.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[_OwnLoop] = []

    def get(self) -> _OwnLoop:
        own: _OwnLoop | None = getattr(self._local, "own", None)
        if own is None:
            own = _OwnLoop()
            self._local.own = own
            with self._lock:
                self._all.append(own)
        return own

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        own = self.get()
        with own.lock:
            return own.loop.run_until_complete(coro)

    def reap(self, closer: Callable[[asyncio.AbstractEventLoop], Coroutine[Any, Any, Any]]) -> None:
        """Close the loops (and, through ``closer``, the connections) of threads that have ended."""
        with self._lock:
            dead = [o for o in self._all if o.thread() is None or not o.thread().is_alive()]  # type: ignore[union-attr]
            self._all = [o for o in self._all if o not in dead]
        for own in dead:
            self._close_one(own, closer)

    def close_all(self, closer: Callable[[asyncio.AbstractEventLoop], Coroutine[Any, Any, Any]]) -> None:
        with self._lock:
            owns, self._all = self._all, []
        self._local = threading.local()
        for own in owns:
            self._close_one(own, closer)

    @staticmethod
    def _close_one(
        own: _OwnLoop, closer: Callable[[asyncio.AbstractEventLoop], Coroutine[Any, Any, Any]]
    ) -> None:
        if not own.lock.acquire(timeout=5.0):
            return
        try:
            if own.loop.is_closed():
                return
            with contextlib.suppress(Exception):
                own.loop.run_until_complete(closer(own.loop))
            own.loop.close()
        finally:
            own.lock.release()
