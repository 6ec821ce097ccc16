"""L1: the in-process LRU in front of the store, bounded by item count and by encoded bytes.

Entries are ``L1Entry`` records keyed by ``(namespace, key)``. Reads take no lock (``OrderedDict``
operations are single C calls under the GIL; a racing eviction shows up as a ``KeyError`` we treat as a
miss); writes and evictions take one lock. A hit hands back ``stored`` when ``thaw`` is None (an immutable
value) and ``thaw(stored)`` otherwise, a copy of its own: callers may edit what they get without changing
what the next caller gets (see ``infra.cache.values``).

**The probe.** ``L1Cache.probe`` is the one rule for "is this a live entry": same generation, not expired;
a hit refreshes the LRU order, counts the entry's cost and hands out the value. The two hottest paths of
the layer, ``Cache.get``'s L1 step and ``Cache.l1_hit`` (``@cached``'s first try), write it out over
``entries`` instead of calling it: the call alone costs ~30 ns, 5-8 % of an L1 hit (measured
issue 19). ``probe`` is their plain reference twin and a hypothesis test
(tests/cache/test_l1.py) checks that both agree with it on every entry, generation and clock.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from infra.cache._missing import MISSING

__all__ = ["L1Cache", "L1Entry"]

#: Counts a hit that saved ``cost`` compute seconds (a namespace's stats), or None: count nothing.
HitCounter = Callable[[float], object] | None


@dataclasses.dataclass(slots=True, eq=False)
class L1Entry:
    """One L1 entry: what is kept, when it expires, under which generation, what it saved, its size.

    A slotted class, not a NamedTuple: a slot read is specialised by the interpreter (as an index into an
    exact tuple is, but not into a tuple subclass, which cost the L1 hit ~15 %)."""

    stored: Any  # the value, or a frozen form of it that ``thaw`` copies
    expires: float | None  # epoch seconds, or None: never
    gen: int  # the namespace's generation when it was written: an older one is never served
    cost: float  # compute seconds a hit saves
    size: int  # encoded bytes (the byte cap counts these)
    thaw: Callable[[Any], Any] | None  # makes each hit's own copy; None: ``stored`` is immutable

    def live(self, gen: int, now: float) -> bool:
        """Whether the entry may be served under generation ``gen`` at ``now``."""
        return self.gen == gen and (self.expires is None or self.expires > now)

    def value(self) -> Any:
        """The value a hit hands out: ``stored`` itself when immutable, else a copy of its own."""
        return self.stored if self.thaw is None else self.thaw(self.stored)


class L1Cache:
    """LRU bounded by ``max_items`` and ``max_bytes`` (0 items: disabled, every get misses)."""

    __slots__ = ("_bytes", "_lock", "entries", "evictions", "max_bytes", "max_items")

    def __init__(self, *, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        #: the entries, least recently used first: read (never written) by the written-out probes
        self.entries: OrderedDict[tuple[str, str], L1Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, k: tuple[str, str]) -> bool:
        """Whether an entry is held for ``(namespace, key)`` (live or not); no LRU refresh."""
        return k in self.entries

    @property
    def enabled(self) -> bool:
        return self.max_items > 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def after_fork(self) -> None:
        """A forked child's L1: a fresh lock (the parent's may have been held at the fork)."""
        self._lock = threading.Lock()

    def probe(self, k: tuple[str, str], gen: int, now: float, count: HitCounter) -> Any:
        """The value of a live entry (LRU refreshed, its cost passed to ``count``), else ``MISSING``."""
        entry = self.entries.get(k)
        if entry is None or not entry.live(gen, now):
            return MISSING
        self.touch(k)
        if count is not None:
            count(entry.cost)
        return entry.value()

    def peek(self, k: tuple[str, str], gen: int, now: float) -> L1Entry | None:
        """The entry if it is live under ``gen`` at ``now``; no LRU refresh, nothing counted."""
        e = self.entries.get(k)
        return e if e is not None and e.live(gen, now) else None

    def touch(self, k: tuple[str, str]) -> None:
        """Mark ``k`` most recently used (no-op if it is gone)."""
        try:  # noqa: SIM105 - contextlib.suppress costs ~0.3 us, a third of an L1 hit
            self.entries.move_to_end(k)
        except KeyError:
            pass

    def set(self, k: tuple[str, str], entry: L1Entry) -> None:
        if self.max_items <= 0:
            return  # L1 disabled: nothing is ever stored, so nothing to replace
        size = entry.size
        if size > self.max_bytes:
            self.delete(k)
            return
        with self._lock:
            old = self.entries.pop(k, None)
            if old is not None:
                self._bytes -= old.size
            self.entries[k] = entry
            self._bytes += size
            data = self.entries
            while len(data) > self.max_items or self._bytes > self.max_bytes:
                _, ev = data.popitem(last=False)
                self._bytes -= ev.size
                self.evictions += 1

    def delete(self, k: tuple[str, str]) -> None:
        with self._lock:
            old = self.entries.pop(k, None)
            if old is not None:
                self._bytes -= old.size

    def clear(self, namespace: str | None = None) -> None:
        with self._lock:
            if namespace is None:
                self.entries.clear()
                self._bytes = 0
                return
            for k in [k for k in self.entries if k[0] == namespace]:
                self._bytes -= self.entries.pop(k).size
