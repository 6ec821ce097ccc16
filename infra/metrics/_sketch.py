"""A log-bucketed, mergeable quantile sketch (DDSketch-style), with no I/O and no locks.

Why this shape: a histogram must answer p50/p95/p99 with a guaranteed *relative* error whatever the
distribution (latencies span µs to minutes), in memory that does not grow with the number of
observations, and two sketches (per-thread shards, two processes, two halves of a stream) must merge
into exactly the sketch that one stream would have built. DDSketch (Masson, Rim, Lee, VLDB 2019) does all
three: value ``v > 0`` goes to bucket ``k = floor(log(v) / log(gamma))`` with
``gamma = (1 + a) / (1 - a)``; bucket ``k`` covers ``[gamma**k, gamma**(k + 1))`` and is represented by
``2 * gamma**(k + 1) / (gamma + 1)``, which is within relative error ``a`` of every value in the bucket.
Merging is adding counts per key. Memory is bounded by ``max_bins`` per store: when a store would grow
past it, its lowest buckets are collapsed into one (so the high quantiles, the ones latency work looks
at, keep their accuracy; the lowest ones lose it first).

The quantile definition is numpy's ``method="higher"``: the item of 0-based rank ``ceil(q * (n - 1))``
(within the sketch's relative accuracy). It is the one of numpy's non-interpolating definitions under
which one slow call in a hundred is the p99 (rank ``ceil(0.99 * 99) = 99``, the slowest), and two
samples give their larger one as p95; ``"lower"`` hid both (issue 16). On large samples it is within one
rank of Prometheus' ``histogram_quantile`` (rank ``q * n``), far below the sketch's 1 %.
min, max, sum and count are kept exactly; answers are clamped into ``[min, max]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["DEFAULT_MAX_BINS", "DEFAULT_RELATIVE_ACCURACY", "QuantileSketch"]

DEFAULT_RELATIVE_ACCURACY = 0.01
# 2048 buckets at 1% cover a ratio of gamma**2048 ~ 5e17 between the smallest and largest value kept
# exactly (1 ns .. 15 years for durations), so collapsing never happens for real latencies.
DEFAULT_MAX_BINS = 2048


def _collapse(bins: dict[int, int], max_bins: int) -> tuple[dict[int, int], int]:
    """Fold the lowest keys of ``bins`` into one so at most ``max_bins`` remain.

    Returns a freshly built dict (so its memory is a function of ``max_bins`` alone, not of the
    insert/delete history) and the new floor key: later values below it are counted in it.
    """
    keys = sorted(bins)
    cut = len(keys) - max_bins  # keys[0..cut] collapse into keys[cut]
    floor_key = keys[cut]
    folded = sum(bins[k] for k in keys[: cut + 1])
    new = {floor_key: folded}
    for k in keys[cut + 1 :]:
        new[k] = bins[k]
    return new, floor_key


class QuantileSketch:
    """Bounded-memory quantile sketch with relative accuracy ``relative_accuracy`` (default 1%).

    ``bins`` maps a bucket key to its count for positive values, ``neg`` does the same for the
    magnitudes of negative values, ``zero`` counts exact zeros. NaN and infinities are not
    representable and raise ``ValueError`` (a histogram filters them out before they get here).
    """

    __slots__ = (
        "_floor",
        "_gamma",
        "_mult",
        "_neg_floor",
        "_rep",
        "bins",
        "count",
        "max",
        "max_bins",
        "min",
        "neg",
        "relative_accuracy",
        "sum",
        "zero",
    )

    def __init__(
        self, *, relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY, max_bins: int = DEFAULT_MAX_BINS
    ) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ValueError(f"relative_accuracy must be in (0, 1), got {relative_accuracy!r}")
        if max_bins < 2:
            raise ValueError(f"max_bins must be at least 2, got {max_bins!r}")
        self.relative_accuracy = relative_accuracy
        self.max_bins = max_bins
        self._gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
        self._mult = 1.0 / math.log(self._gamma)
        self._rep = 2.0 * self._gamma / (self._gamma + 1.0)
        self.bins: dict[int, int] = {}
        self.neg: dict[int, int] = {}
        self.zero = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self._floor: int | None = None  # lowest key kept in `bins` once collapsing started
        self._neg_floor: int | None = None

    # -- mapping ---------------------------------------------------------------------------------

    def key(self, value: float) -> int:
        """The bucket key of a positive finite ``value``."""
        return math.floor(math.log(value) * self._mult)

    def value_of(self, key: int) -> float:
        """The representative value of bucket ``key`` (within relative accuracy of all its members)."""
        return math.exp(key / self._mult) * self._rep

    @property
    def key_multiplier(self) -> float:
        """``1 / log(gamma)``: ``key(v)`` is ``floor(log(v) * key_multiplier)`` (for code inlining it)."""
        return self._mult

    # -- adding ----------------------------------------------------------------------------------

    def add(self, value: float, count: int = 1) -> None:
        """Add ``value`` ``count`` times."""
        if not math.isfinite(value):
            raise ValueError(f"cannot add a non-finite value to a sketch: {value!r}")
        if value > 0.0:
            self._add_key(self.bins, self.key(value), count, negative=False)
        elif value < 0.0:
            self._add_key(self.neg, self.key(-value), count, negative=True)
        else:
            self.zero += count
        self.count += count
        self.sum += value * count
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def _add_key(self, bins: dict[int, int], k: int, count: int, *, negative: bool) -> None:
        floor = self._neg_floor if negative else self._floor
        if floor is not None and k < floor:
            k = floor
        bins[k] = bins.get(k, 0) + count
        if len(bins) > self.max_bins:
            self._collapse(negative=negative)

    def _collapse(self, *, negative: bool) -> None:
        if negative:
            self.neg, self._neg_floor = _collapse(self.neg, self.max_bins)
        else:
            self.bins, self._floor = _collapse(self.bins, self.max_bins)

    def add_many(self, values: Iterable[float]) -> None:
        """Add every value of ``values``; a numpy array takes a vectorised path (same keys as `add`)."""
        if type(values).__module__ == "numpy":
            self._add_numpy(values)
            return
        for v in values:
            self.add(v)

    def _add_numpy(self, arr: Any) -> None:
        import numpy as np  # only when the caller already handed us a numpy array

        a = np.asarray(arr, dtype=np.float64).ravel()
        if a.size == 0:
            return
        if not np.isfinite(a).all():
            raise ValueError("cannot add non-finite values to a sketch")
        pos = a[a > 0.0]
        negv = -a[a < 0.0]
        self.zero += int(a.size - pos.size - negv.size)
        for part, negative in ((pos, False), (negv, True)):
            if part.size == 0:
                continue
            keys = np.floor(np.log(part) * self._mult).astype(np.int64)
            lo = int(keys.min())
            counts = np.bincount(keys - lo)
            target = self.neg if negative else self.bins
            floor = self._neg_floor if negative else self._floor
            for off in np.flatnonzero(counts).tolist():
                k = lo + off
                if floor is not None and k < floor:
                    k = floor
                target[k] = target.get(k, 0) + int(counts[off])
            if len(target) > self.max_bins:
                self._collapse(negative=negative)
        self.count += int(a.size)
        self.sum += float(a.sum())
        self.min = min(self.min, float(a.min()))
        self.max = max(self.max, float(a.max()))

    def merge(self, other: QuantileSketch) -> None:
        """Add every observation of ``other`` (same accuracy required) into this sketch."""
        if other._gamma != self._gamma:
            raise ValueError(
                "cannot merge sketches with different relative accuracy: "
                f"{self.relative_accuracy} vs {other.relative_accuracy}"
            )
        self.merge_bins(other.bins, other.neg, other.zero, other.count, other.sum, other.min, other.max)
        for mine, theirs, negative in (
            (self._floor, other._floor, False),
            (self._neg_floor, other._neg_floor, True),
        ):
            if theirs is not None and (mine is None or theirs > mine):
                # The other side collapsed further: re-floor so both contribute at the same resolution.
                store = self.neg if negative else self.bins
                folded = sum(c for k, c in store.items() if k <= theirs)
                kept = {k: c for k, c in store.items() if k > theirs}
                new = {theirs: folded} if folded else {}
                new.update(kept)
                if negative:
                    self.neg, self._neg_floor = new, theirs
                else:
                    self.bins, self._floor = new, theirs

    def merge_bins(
        self,
        bins: Mapping[int, int],
        neg: Mapping[int, int],
        zero: int,
        count: int,
        total: float,
        vmin: float,
        vmax: float,
    ) -> None:
        """Add raw bucket counts (as kept by a histogram shard) into this sketch."""
        for store, src, negative in ((self.bins, bins, False), (self.neg, neg, True)):
            floor = self._neg_floor if negative else self._floor
            for k, c in src.items():
                if floor is not None and k < floor:
                    k = floor
                store[k] = store.get(k, 0) + c
        if len(self.bins) > self.max_bins:
            self._collapse(negative=False)
        if len(self.neg) > self.max_bins:
            self._collapse(negative=True)
        self.zero += zero
        self.count += count
        self.sum += total
        if vmin < self.min:
            self.min = vmin
        if vmax > self.max:
            self.max = vmax

    # -- reading ---------------------------------------------------------------------------------

    @property
    def bin_count(self) -> int:
        """Buckets in use (positive + negative stores); bounded by ``2 * max_bins``."""
        return len(self.bins) + len(self.neg)

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0 <= q <= 1), numpy ``method="higher"``; NaN when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q!r}")
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Iterable[float]) -> list[float]:
        """Several quantiles in one pass over the buckets (each as `quantile`)."""
        qs = list(qs)
        n = self.count
        if n == 0:
            return [math.nan] * len(qs)
        order = sorted(range(len(qs)), key=lambda i: qs[i])
        out = [math.nan] * len(qs)
        # ceil(q * (n - 1)), forgiving the float error of q (0.95 * 20 is 18.999999999999996).
        ranks = [(i, math.ceil(qs[i] * (n - 1) - 1e-9)) for i in order]
        # Walk buckets in value order: most negative first, then zeros, then positives.
        walk: list[tuple[float, int]] = [
            (-self.value_of(k), self.neg[k]) for k in sorted(self.neg, reverse=True)
        ]
        if self.zero:
            walk.append((0.0, self.zero))
        walk.extend((self.value_of(k), self.bins[k]) for k in sorted(self.bins))
        cum = 0
        j = 0
        for value, c in walk:
            cum += c
            while j < len(ranks) and cum > ranks[j][1]:
                out[ranks[j][0]] = min(max(value, self.min), self.max)
                j += 1
            if j == len(ranks):
                break
        while j < len(ranks):  # only reachable if counts and buckets disagree; answer the max
            out[ranks[j][0]] = self.max
            j += 1
        return out

    def copy(self) -> QuantileSketch:
        new = QuantileSketch(relative_accuracy=self.relative_accuracy, max_bins=self.max_bins)
        new.bins = dict(self.bins)
        new.neg = dict(self.neg)
        new.zero, new.count, new.sum, new.min, new.max = self.zero, self.count, self.sum, self.min, self.max
        new._floor, new._neg_floor = self._floor, self._neg_floor
        return new

    def __eq__(self, other: object) -> bool:
        """Same buckets, counts, min and max (``sum`` compared to float rounding of the additions)."""
        if not isinstance(other, QuantileSketch):
            return NotImplemented
        return (
            self._gamma == other._gamma
            and self.bins == other.bins
            and self.neg == other.neg
            and (self.zero, self.count, self.min, self.max) == (other.zero, other.count, other.min, other.max)
            and math.isclose(self.sum, other.sum, rel_tol=1e-9, abs_tol=1e-12)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"QuantileSketch(count={self.count}, bins={self.bin_count}, "
            f"relative_accuracy={self.relative_accuracy}, max_bins={self.max_bins})"
        )
