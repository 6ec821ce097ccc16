"""Where a histogram's ``le`` boundaries fall on the quantile sketch's key grid, and counting into it.

Every histogram shard counts values by sketch key (``_shards.HistogramShard``); this module knows the
one mapping all shards share (1% relative accuracy) and, per histogram, where its ``le`` boundaries
fall on that grid (``BucketLayout``), so ``le`` counts are derived exactly at read time and the
``observe`` hot path pays for no bisect.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from math import exp, floor, log

from ._shards import HistogramShard
from ._sketch import DEFAULT_RELATIVE_ACCURACY, QuantileSketch

__all__ = ["KEY_MULT", "BucketLayout"]

# The sketch mapping shared by every histogram shard (1% relative accuracy): ``key(v)`` is
# ``floor(log(v) * KEY_MULT)``. ``_core`` imports it as a module global so ``observe`` reads it with one
# global lookup.
KEY_MULT = QuantileSketch(relative_accuracy=DEFAULT_RELATIVE_ACCURACY).key_multiplier
_INF = math.inf
_EDGE_HI, _EDGE_LO = 1.0 + 1e-12, 1.0 - 1e-12


class BucketLayout:
    """Where the ``le`` boundaries of a histogram fall on the sketch's key grid (computed once).

    Sketch key ``k`` holds values in ``[g**k, g**(k+1))``. Since ``log`` and ``floor`` are monotonic, a
    value whose key is below ``key(b)`` is below ``b`` and one whose key is above is above it; only the
    key containing ``b`` itself (a *straddling* key) is ambiguous, and the slow path splits it exactly.
    So the ``le`` counts are exact, and ``observe`` pays for no bisect.
    """

    __slots__ = ("_index", "bounds", "keys", "n_zero", "straddle")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.n_zero = sum(1 for b in bounds if b == 0.0)  # a 0 boundary: zeros at or below it
        self.keys = [floor(log(b) * KEY_MULT) for b in bounds if b > 0.0]
        straddle: dict[int, tuple[float, ...]] = {}
        for k, b in zip(self.keys, (b for b in bounds if b > 0.0), strict=False):
            straddle[k] = (*straddle.get(k, ()), b)
        self.straddle = straddle
        self._index: dict[int, int] = {}

    def index(self, k: int) -> int:
        """The ``le`` slot of sketch key ``k`` (for a straddling key: of its lowest sub-bucket)."""
        i = self._index.get(k)
        if i is None:
            i = self._index[k] = self.n_zero + bisect_left(self.keys, k)
        return i

    def slots(self, keys: Sequence[int]) -> list[int]:
        """The ``le`` slot of each sketch key in ``keys`` (a sized copy): one C call once each key's slot
        is cached (``le_counts`` caches every key it reads)."""
        try:
            return list(map(self._index.__getitem__, keys))
        except KeyError:
            return list(map(self.index, keys))

    def le_counts(self, shards: Iterable[HistogramShard]) -> tuple[list[int], float]:
        """Per-``le``-slot counts (last = +Inf overflow) and the sum over ``shards``."""
        le = [0] * (len(self.bounds) + 1)
        index = self._index
        total = 0.0
        for s in shards:
            le[0] += s.zero
            # Copy the items in one C call before iterating: the owning thread may add keys meanwhile.
            for k, c in tuple(s.bins.items()):
                i = index.get(k)
                if i is None:
                    i = self.index(k)
                le[i] += c
            for k, parts in tuple(s.split.items()):
                i = self.index(k)
                for j, c in enumerate(parts):
                    le[i + j] += c
            total += s.sum
        return le, float(total)

    @staticmethod
    def count_split(s: HistogramShard, inside: tuple[float, ...], k: int, values: Iterable[float]) -> None:
        """Count values of straddling key ``k`` in the sub-bucket each falls in (exact ``le`` counts)."""
        parts = s.split.get(k)
        if parts is None:
            s.shape += 1  # a key is added: see ``_shards``
            parts = s.split[k] = [0] * (len(inside) + 1)
            s.shape += 1
        for v in values:
            parts[bisect_left(inside, v)] += 1

    def fold_sorted(self, s: HistogramShard, c: list[float]) -> None:
        """Count the sorted, non-negative ``c`` into ``s`` exactly as ``observe`` would, one by one.

        Values sharing a sketch key form one run of ``c``: find the run's end by bisecting for the
        key's upper edge, then settle it with the key formula itself (``exp``/``log`` rounding may put
        the edge one value off), so every value lands where ``observe`` would have put it.
        """
        n = len(c)
        i = 0
        while i < n and c[i] <= 0.0:
            i += 1
        s.zero += i
        straddle = self.straddle
        while i < n:
            k = floor(log(c[i]) * KEY_MULT)
            try:
                edge = exp((k + 1) / KEY_MULT)
            except OverflowError:
                edge = _INF
            j = bisect_left(c, edge, i)
            # Only a value within ~1e-12 of the edge can be misplaced by rounding (the key's own error is
            # ~1e-13 of a key step): check those with the exact formula, trust the bisect elsewhere. Near
            # the subnormal range ``exp`` loses precision: check every value there.
            hi, lo = (edge * _EDGE_HI, edge * _EDGE_LO) if edge > 1e-290 else (_INF, 0.0)
            while j < n and c[j] <= hi and floor(log(c[j]) * KEY_MULT) == k:
                j += 1
            while j > i + 1 and c[j - 1] >= lo and floor(log(c[j - 1]) * KEY_MULT) != k:
                j -= 1
            inside = straddle.get(k)
            if inside is None or (s.floor is not None and k < s.floor):
                s.add_key(k, j - i)
            else:
                self.count_split(s, inside, k, c[i:j])
            i = j
        s.sum += sum(c)
        if c[0] < s.min:
            s.min = c[0]
        if c[-1] > s.max:
            s.max = c[-1]
