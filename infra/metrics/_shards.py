"""Per-thread shards: how a bound child counts without taking a lock on the hot path.

Each thread that touches a child gets its own mutable cell (reached through a ``threading.local``),
so an ``inc``/``observe`` is a read-modify-write on memory no other thread writes: nothing can be lost,
with or without the GIL. Readers (render, stats) sum the shards under the child's lock, which writers
never take after their first call.

Readers that take no lock (``_scrape``) rely on two things kept here: ``ShardSet.all`` is a new tuple
whenever the set of shards changes, and a histogram shard's ``shape`` goes up *before* any key is added
to its ``bins`` or ``split`` or either dict is replaced, and again after (keys are never removed
otherwise), so equal ``all`` and ``shape``s mean the same keys in the same order: a plan read between
the two bumps is stale by the second.

Shards of threads that have finished are folded into a base shard the next time any thread creates a
shard for that child, so a thread-per-request server does not grow memory per thread ever seen: the
count is bounded by the threads alive at once (plus one). A thread that finished can no longer write its
shard, so folding it is safe.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from ._sketch import DEFAULT_MAX_BINS, _collapse

__all__ = ["CounterCell", "HistogramShard", "ShardSet"]


class CounterCell:
    """One thread's running total for a counter child."""

    __slots__ = ("thread", "value")

    def __init__(self, thread: threading.Thread | None) -> None:
        self.thread = thread
        self.value = 0.0

    def fold(self, other: CounterCell) -> None:
        self.value += other.value

    def clear(self) -> None:
        self.value = 0.0


class HistogramShard:
    """One thread's histogram state: sketch buckets, sum, min, max.

    ``bins`` counts positive values by sketch key (see ``_sketch``); ``zero`` counts exact zeros.
    A sketch key whose bucket contains an ``le`` boundary (a "straddling" key, see
    ``_core.BucketLayout``) is never stored in ``bins``: it takes the slow path and is counted in
    ``split[key][j]``, ``j`` being how many of the boundaries inside that bucket lie below the value.
    That keeps the exact ``le`` counts derivable from the buckets at render time, so ``observe``
    needs no bisect. The count is the total of all three (one source of truth, so ``+Inf`` always
    equals ``_count``).
    """

    __slots__ = ("bins", "floor", "max", "min", "shape", "split", "sum", "thread", "zero")

    def __init__(self, thread: threading.Thread | None) -> None:
        self.thread = thread
        self.bins: dict[int, int] = {}
        self.split: dict[int, list[int]] = {}
        self.zero = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.floor: int | None = None  # lowest sketch key once collapsing started
        self.shape = 0  # bumped before a key is added or a dict replaced (see the module docstring)

    def count(self) -> int:
        return sum(self.bins.values()) + self.zero + sum(sum(p) for p in self.split.values())

    def add_key(self, k: int, n: int = 1) -> None:
        """Count sketch key ``k`` (slow path: a new key, or one below the collapse floor)."""
        if self.floor is not None and k < self.floor:
            k = self.floor
        bins = self.bins
        c = bins.get(k)
        if c is not None:
            bins[k] = c + n
            return
        self.shape += 1  # before the key lands, and after: see the module docstring
        bins[k] = n
        if len(bins) > DEFAULT_MAX_BINS:
            self.bins, self.floor = _collapse(bins, DEFAULT_MAX_BINS)
        self.shape += 1

    def fold(self, other: HistogramShard) -> None:
        self.shape += 1  # keys may be added or the dicts replaced (see the module docstring)
        if self.floor is None and other.floor is None:
            # Neither has collapsed (real latencies never do): add the counts, check the bound once.
            bins = self.bins
            if not bins:
                bins.update(other.bins)
            else:
                get = bins.get
                for k, c in other.bins.items():
                    bins[k] = get(k, 0) + c
            if len(bins) > DEFAULT_MAX_BINS:
                self.bins, self.floor = _collapse(bins, DEFAULT_MAX_BINS)
        else:
            for k, c in other.bins.items():
                self.add_key(k, c)
        for k, parts in other.split.items():
            mine = self.split.get(k)
            if mine is None:
                self.split[k] = list(parts)
            else:
                self.split[k] = [a + b for a, b in zip(mine, parts, strict=False)]
        self.zero += other.zero
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def clear(self) -> None:
        self.shape += 1
        self.bins = {}
        self.split = {}
        self.zero = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.floor = None


S = TypeVar("S", CounterCell, HistogramShard)
R = TypeVar("R")


class ShardSet(Generic[S]):
    """The shards of one child: a base (folded dead threads) plus one per live thread."""

    __slots__ = ("all", "base", "local", "lock", "shards")

    def __init__(self, base: S) -> None:
        self.base: S = base
        self.shards: list[S] = []
        # The base and the live shards as one tuple, replaced (never changed) when a shard comes or goes.
        self.all: tuple[S, ...] = (base,)
        self.local = threading.local()
        self.lock = threading.Lock()

    def add(self, shard: S) -> S:
        """Register ``shard`` for the calling thread (first touch); fold finished threads' shards."""
        with self.lock:
            live: list[S] = []
            for s in self.shards:
                t = s.thread
                if t is not None and not t.is_alive():
                    self.base.fold(s)
                else:
                    live.append(s)
            live.append(shard)
            self.shards = live
            self.all = (self.base, *live)  # type: ignore[arg-type]  # mypy splits S's constraints
        self.local.s = shard
        return shard

    def read(self, fn: Callable[[tuple[S, ...]], R]) -> R:
        """Apply ``fn`` to the base and live shards (``all``) under the lock, so a concurrent fold (which
        moves a dead shard into the base) is never seen half-done or twice. ``fn`` should only copy
        numbers."""
        with self.lock:
            return fn(self.all)

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (another thread may have held this one at fork time)."""
        self.lock = threading.Lock()

    def clear(self) -> None:
        with self.lock:
            self.base.clear()
            for s in self.shards:
                s.clear()
