"""Write-behind for cache stores: the write happens on one background thread, off the caller's path.

A miss's store is the slowest part of the layer's own work (an SQLite transaction: ~0.3 ms median on a busy
machine, several ms at p90 when a checkpoint or a lock wait lands on it). Entries stay readable from
``pending`` until written, so a client always reads its own writes. ``flush()`` waits for the queue to drain;
clients flush on ``close()`` and at interpreter exit.
"""

from __future__ import annotations

import atexit
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["WriteBehind"]


class WriteBehind:
    """A queue of (cache, namespace, {key: value}) written by one daemon thread, started on first use."""

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        self._on_error = on_error
        self._q: queue.SimpleQueue[tuple[Any, str, dict[str, Any]]] = queue.SimpleQueue()
        self.pending: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None

    def put(self, cache: Any, ns: str, items: dict[str, Any]) -> None:
        if not items:
            return
        with self._lock:
            for k, v in items.items():
                self.pending[(ns, k)] = v
            self._idle.clear()
            # under the lock: the writer can't see an empty queue between clear() and put()
            self._q.put((cache, ns, items))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="infra-ollama-cache-writer", daemon=True
                )
                self._thread.start()
                ref = weakref.ref(self)
                atexit.register(_flush_at_exit, ref)

    def get(self, ns: str, key: str) -> Any:
        """The queued value for (ns, key), or None."""
        return self.pending.get((ns, key)) if self.pending else None

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every queued entry is written; False if ``timeout`` ran out first."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            cache, ns, items = self._q.get()
            try:
                if len(items) == 1:
                    ((k, v),) = items.items()
                    cache.set(ns, k, v)
                else:
                    cache.set_many(ns, items)
            except Exception as exc:  # fail open: counted and logged once by the owner
                self._on_error(exc)
            with self._lock:
                for k, v in items.items():
                    if self.pending.get((ns, k)) is v:
                        del self.pending[(ns, k)]
                if self._q.empty():
                    self._idle.set()


def _flush_at_exit(ref: weakref.ref[WriteBehind]) -> None:
    w = ref()
    if w is not None:
        w.flush(5.0)
