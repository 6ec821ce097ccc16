"""L1: the in-process LRU in front of the store, bounded by item count and by encoded bytes.

Entries are ``(stored, expires_at, generation, cost, size, thaw)`` tuples keyed by ``(namespace, key)``.
Reads take no lock (``OrderedDict`` operations are single C calls under the GIL; a racing eviction shows up
as a ``KeyError`` we treat as a miss); writes and evictions take one lock. A hit hands back ``stored``
when ``thaw`` is None (an immutable value) and ``thaw(stored)`` otherwise, a copy of its own: callers may
edit what they get without changing what the next caller gets (see ``infra.cache.values``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

__all__ = ["L1Cache", "L1Entry"]

#: (stored form, expires_at or None, generation, cost seconds, encoded size in bytes, thaw or None)
L1Entry = tuple[Any, "float | None", int, float, int, Any]


class L1Cache:
    """LRU bounded by ``max_items`` and ``max_bytes`` (0 items: disabled, every get misses)."""

    __slots__ = ("_bytes", "_data", "_lock", "evictions", "max_bytes", "max_items")

    def __init__(self, *, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._data: OrderedDict[tuple[str, str], L1Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, k: tuple[str, str]) -> L1Entry | None:
        e = self._data.get(k)
        if e is not None:
            try:  # noqa: SIM105 - contextlib.suppress costs ~0.3 us on the hit path
                self._data.move_to_end(k)
            except KeyError:  # evicted by another thread between the two calls
                pass
        return e

    def set(self, k: tuple[str, str], entry: L1Entry) -> None:
        if self.max_items <= 0:
            return  # L1 disabled: nothing is ever stored, so nothing to replace
        size = entry[4]
        if size > self.max_bytes:
            self.delete(k)
            return
        with self._lock:
            old = self._data.pop(k, None)
            if old is not None:
                self._bytes -= old[4]
            self._data[k] = entry
            self._bytes += size
            data = self._data
            while len(data) > self.max_items or self._bytes > self.max_bytes:
                _, ev = data.popitem(last=False)
                self._bytes -= ev[4]
                self.evictions += 1

    def delete(self, k: tuple[str, str]) -> None:
        with self._lock:
            old = self._data.pop(k, None)
            if old is not None:
                self._bytes -= old[4]

    def clear(self, namespace: str | None = None) -> None:
        with self._lock:
            if namespace is None:
                self._data.clear()
                self._bytes = 0
                return
            for k in [k for k in self._data if k[0] == namespace]:
                self._bytes -= self._data.pop(k)[4]
