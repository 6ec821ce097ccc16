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

__all__ = ["WriteBehind", "flush_all"]

_ALL: weakref.WeakSet[WriteBehind] = weakref.WeakSet()


def flush_all(timeout: float = 10.0) -> bool:
    """Wait for every live write-behind queue in the process (tests, shutdown); False if one timed out."""
    return all(w.flush(timeout) for w in list(_ALL))


class WriteBehind:
    """A queue of (cache, namespace, {key: value}, cost) written by one daemon thread, started on first use.

    ``cost`` is the compute seconds each entry saves on a hit; it is stored with the entry (``Cache.set``'s
    ``cost``) so the cache's ``compute_seconds_saved`` counts Ollama hits too.
    """

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        self._on_error = on_error
        self._q: queue.SimpleQueue[tuple[Any, str, dict[str, Any], float]] = queue.SimpleQueue()
        self.pending: dict[tuple[str, str], tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        _ALL.add(self)

    def put(self, cache: Any, ns: str, items: dict[str, Any], cost: float = 0.0) -> None:
        if not items:
            return
        with self._lock:
            for k, v in items.items():
                self.pending[(ns, k)] = (v, cost)
            self._idle.clear()
            # under the lock: the writer can't see an empty queue between clear() and put()
            self._q.put((cache, ns, items, cost))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="infra-ollama-cache-writer", daemon=True
                )
                self._thread.start()
                ref = weakref.ref(self)
                atexit.register(_flush_at_exit, ref)

    def get(self, ns: str, key: str) -> tuple[Any, float] | None:
        """The queued (value, cost) for (ns, key), or None."""
        return self.pending.get((ns, key)) if self.pending else None

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every queued entry is written; False if ``timeout`` ran out first."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            cache, ns, items, cost = self._q.get()
            try:
                if len(items) == 1 or cost:  # set_many has no cost: one set per entry (off the call path)
                    for k, v in items.items():
                        cache.set(ns, k, v, cost=cost)
                else:
                    cache.set_many(ns, items)
            except Exception as exc:  # fail open: counted and logged once by the owner
                self._on_error(exc)
            with self._lock:
                for k, v in items.items():
                    queued = self.pending.get((ns, k))
                    if queued is not None and queued[0] is v:
                        del self.pending[(ns, k)]
                if self._q.empty():
                    self._idle.set()


def _flush_at_exit(ref: weakref.ref[WriteBehind]) -> None:
    w = ref()
    if w is not None:
        w.flush(5.0)
