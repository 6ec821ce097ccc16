"""A histogram's series as text in a few long C calls: the scrape under load (issue 18).

Why: under the GIL (3.11) a thread lets another run only between two bytecodes, once that other thread
has asked for the GIL for ``sys.getswitchinterval()`` (5 ms). With two CPU-bound observers, each switch
costs the scrape ~10-15 ms of waiting (their slices), whatever it had left to do. A scrape written as a
Python loop per series or per shard key offers a switch point every few µs, so it is switched out after
every 5 ms of its own CPU: a 10 ms scrape took ~40 ms. Here a metric's series are read and formatted by
a handful of ``list(map(...))`` / ``list.extend`` calls over nested C iterators (``map``, ``chain``,
``accumulate``, ``itemgetter``): no bytecode runs inside them, so the scrape can be switched out only at
the few boundaries between them, and the read of every series is one GIL hold (a consistent snapshot).

How: each series has a *plan*, built under its shard lock from its keys: where each number of its flat
snapshot goes. The snapshot of a series is, in one C pass over its shards (``ShardSet.all``):

    (all, shape..., 0, zero..., bins values..., split parts..., sum..., shape...)

``all`` being the tuple read, ``shape`` each shard's key-structure counter (twice: before and after its
numbers), ``0`` the start of the cumulative sum. A plan is valid while ``all`` is the same object and
every shape is what it was, at both ends: then each dict holds the keys it held when the plan was built,
in the same order (keys are only appended, and a shape goes up before and after a key is added or a dict
replaced, see ``_shards``). The plan's ``perm`` picks the counts in ``le``-slot order
behind the ``0``, ``accumulate`` makes them cumulative, ``pos`` picks each ``le`` bucket (the last one
twice: ``+Inf`` and ``_count``) and ``sums`` the shards' sums, added in shard order as the locked read
adds them, so the text is byte for byte what ``le_counts`` gives.

A series whose plan is stale (a key not seen before, a new thread's shard, a fold, a reset) is read the
plain way (``le_counts`` under its lock); one whose ``all`` is not the tuple its plan was built on (a
new thread touched it, or it is new) is left out of the pipeline altogether. Within a time allowance
a scrape (``REBUILD_MARGIN``, see ``HistogramScrape._fix``) stale series get a new plan for the next
scrape, so a scrape after new threads touched every series costs about what the plain read of them all
does, not ~2.5x (a plan costs more than the read), and plans come back over a few scrapes; in the
steady state (keys seen before, the same threads) no series is stale. A sum whose text ``repr`` might
spell otherwise than ``format_float`` (past 1e6, inf, tiny) is found from the text's end and that series
written out again.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_right
from collections.abc import Iterator
from functools import partial
from itertools import accumulate, chain, compress, repeat, tee
from operator import add, and_, attrgetter, eq, is_, itemgetter, lt, not_, sub
from time import perf_counter
from typing import Any, TypeAlias

from ._core import Histogram, HistogramChild
from ._layout import BucketLayout
from ._names import format_float
from ._shards import HistogramShard, ShardSet

__all__ = ["MIN_REBUILDS", "REBUILD_MARGIN", "HistogramScrape", "series_template"]

_all = attrgetter("all")
_shard_set = attrgetter("shard_set")
_shape = attrgetter("shape")
_zero = attrgetter("zero")
_bins = attrgetter("bins")
_split = attrgetter("split")
_sum = attrgetter("sum")
_values = dict.values
_flat = chain.from_iterable
_START = (0,)
# ``getter(snapshot)`` for a list of getters in C (every getter is an itemgetter; operator.call is 3.11+).
_call = itemgetter.__call__
_NO_PLAN = itemgetter(0)  # a series without a plan: its check (``all``) never equals None
# How much a scrape may spend rebuilding stale plans (a plan costs ~1.5x the plain read of its series;
# rebuilding every one made the first scrape after new threads ~2.5x the plain read of them all):
# REBUILD_MARGIN of the plain read of every series, plus what the pipeline saved this scrape (see
# ``HistogramScrape._fix``); MIN_REBUILDS are rebuilt whatever the time. Where threads keep coming (a
# thread-per-request server), a plan rebuilt for the last scrape is stale again by this one: the count
# allowed halves down to MIN_REBUILDS while fewer than half of them were used, and is back once they are.
REBUILD_MARGIN = 0.1
MIN_REBUILDS = 8
_first, _second = itemgetter(0), itemgetter(1)

Getter: TypeAlias = "itemgetter[Any]"
Plan: TypeAlias = "tuple[Getter, object, Getter, Getter, Getter]"  # check, expected, perm, pos, sums


def series_template(m: Histogram, child: HistogramChild) -> str:
    """A series' lines as one ``%`` template (every ``le`` bucket, the count, the sum), cached on the
    child: filled with ``(*cumulative, count, sum_text)``."""
    cached = child.render_cache
    if cached is not None:
        return cached[0]
    lbl = child.label_text.replace("%", "%%")
    sep = "," if lbl else ""
    tail = f"{{{lbl}}} " if lbl else " "
    lines = [f'{m.name}_bucket{{{lbl}{sep}le="{format_float(b)}"}} %s' for b in (*m.buckets, math.inf)]
    lines.append(f"{m.name}_count{tail}%s")
    lines.append(f"{m.name}_sum{tail}%s")
    child.render_cache = ["\n".join(lines)]
    return child.render_cache[0]


def snapshots(alls: list[tuple[HistogramShard, ...]]) -> Iterator[tuple[Any, ...]]:
    """Every series' flat snapshot (see the module docstring), lazily: each made in C, no bytecode."""
    return map(
        tuple,
        map(
            chain,
            zip(alls),
            map(map, repeat(_shape), alls),
            repeat(_START),
            map(map, repeat(_zero), alls),
            map(_flat, map(map, repeat(_values), map(map, repeat(_bins), alls))),
            map(_flat, map(_flat, map(map, repeat(_values), map(map, repeat(_split), alls)))),
            map(map, repeat(_sum), alls),
            map(map, repeat(_shape), alls),
        ),
    )


def build_plan(layout: BucketLayout, shards: tuple[HistogramShard, ...]) -> Plan:
    """Where each number of a series' snapshot goes, from its keys (read under the series' lock)."""
    n = len(shards)
    shapes = tuple(map(_shape, shards))  # before the keys: a key added meanwhile makes the plan stale
    slots = [0] * n  # the zero counts
    slots += layout.slots(tuple(_flat(map(tuple, map(_bins, shards)))))  # every shard's bins, in order
    index = layout.index
    for s in shards:
        for k, parts in tuple(s.split.items()):
            i = index(k)
            slots.extend(range(i, i + len(parts)))
    first = n + 2  # where the zero counts start in the snapshot
    order = sorted(range(len(slots)), key=slots.__getitem__)
    ranked = sorted(slots)
    pos = list(map(bisect_right, repeat(ranked), range(len(layout.bounds) + 1)))
    return (
        itemgetter(0, *range(1, n + 1), *range(-n, 0)),
        (shards, *shapes, *shapes),
        itemgetter(n + 1, *map(first.__add__, order)),
        itemgetter(*pos, pos[-1]),
        itemgetter(slice(-2 * n, -n)),
    )


class HistogramScrape:
    """A histogram's read plans for its first ``n`` series (series are only ever appended).

    ``rebuilds`` counts the plans built so far and ``budget`` how many the next scrape may build (seams
    for tests)."""

    __slots__ = ("budget", "checks", "children", "expected", "layout", "lock", "n", "pendings", "perms",
                 "planned", "poss", "rebuilds", "rebuilt", "sets", "sums", "templates")  # fmt: skip

    def __init__(self, m: Histogram, old: HistogramScrape | None = None) -> None:
        children = m.children()
        keep = 0 if old is None else old.n
        self.children = children
        self.n: int = len(children)
        self.budget: int = self.cap() if old is None else min(old.budget, self.cap())
        self.rebuilt: list[int] = [] if old is None else old.rebuilt  # the series replanned last scrape
        self.rebuilds: int = 0 if old is None else old.rebuilds
        self.layout = m.layout
        self.lock = threading.Lock()
        self.sets: list[ShardSet[HistogramShard]] = list(map(_shard_set, children))
        self.pendings = [c.pending for c in children]
        new = range(self.n - keep)
        self.templates: list[str] = (old.templates[:keep] if old else []) + [
            series_template(m, c) for c in children[keep:]
        ]
        kept: list[list[Any]] = [[], [], [], [], [], []]
        if old is not None:
            with old.lock:  # copied whole, not while a scrape of the old plans replaces some
                lists = (old.planned, old.checks, old.expected, old.perms, old.poss, old.sums)
                kept = [p[:keep] for p in lists]
        # The ``all`` each plan was built on (None: no plan): a series whose ``all`` is another is stale.
        self.planned: list[object] = kept[0] + [None for _ in new]
        self.checks: list[Getter] = kept[1] + [_NO_PLAN for _ in new]
        self.expected: list[object] = kept[2] + [None for _ in new]
        self.perms: list[Getter] = kept[3] + [_NO_PLAN for _ in new]
        self.poss: list[Getter] = kept[4] + [_NO_PLAN for _ in new]
        self.sums: list[Getter] = kept[5] + [_NO_PLAN for _ in new]

    def lines(self, out: list[str]) -> None:
        """Append every series' text (one string a series) to ``out``."""
        with self.lock:  # one scrape of this metric at a time: the plan lists are replaced in place
            if any(self.pendings):
                for child in compress(self.children, self.pendings):
                    child.fold_pending()
            alls = list(map(_all, self.sets))
            # A series a new thread touched since its plan was built (another ``all``), or a new one,
            # skips the pipeline: it is read in ``_fix``.
            planned = list(map(is_, alls, self.planned))
            lists = [alls, self.templates, self.checks, self.expected, self.perms, self.poss, self.sums]
            every = all(planned)
            if not every:
                lists = [list(compress(xs, planned)) for xs in lists]
            start = perf_counter()
            try:
                # The steady state, in one C call: read, check, count and format every series.
                got = list(self._pipeline(*lists))
            except (IndexError, TypeError, RuntimeError):
                # A stale plan that did not fit its series' snapshot, or a dict that grew under the read
                # (only if a finalizer switched threads mid-read): every series the plain way.
                got = [(False, "")] * len(lists[0])
            if not every:
                got = self._spread(planned, got)
            pipe_s = perf_counter() - start
            ok = list(map(_first, got))
            texts = list(map(_second, got))
            # The sum's digits before its dot, from the text's end: past 6 (1e6), or no dot after the
            # last blank (inf, nan, 1e-05), ``format_float`` may spell it otherwise than ``repr``.
            digits = map(sub, map(str.rfind, texts, repeat(".")), map(str.rfind, texts, repeat(" ")))
            plain = list(map(lt, map(abs, map(sub, digits, repeat(4))), repeat(4)))  # 0 < d < 8: <= 6 digits
            if self.rebuilt:
                self._adapt(ok)
            if not all(ok) or not all(plain):
                self._fix(texts, ok, plain, pipe_s)
            out.extend(texts)

    def _spread(self, planned: list[bool], got: list[tuple[bool, str]]) -> list[tuple[bool, str]]:
        """The pipeline's answers for the ``planned`` series at their places among all (in C); the
        others ``(False, "")``: read in ``_fix``."""
        out: list[tuple[bool, str]] = [(False, "")] * self.n
        list(map(out.__setitem__, compress(range(self.n), planned), got))
        return out

    def _pipeline(
        self,
        alls: list[tuple[HistogramShard, ...]],
        templates: list[str],
        checks: list[Getter],
        expected: list[object],
        perms: list[Getter],
        poss: list[Getter],
        sums_of: list[Getter],
    ) -> Iterator[tuple[bool, str]]:
        """Per series, lazily: (plan still valid, its text); see the module docstring."""
        s_check, s_sum, s_perm = tee(snapshots(alls), 3)
        ok = map(eq, map(_call, checks, s_check), expected)
        sums = map(repr, map(float, map(sum, map(_call, sums_of, s_sum))))
        cums = map(_call, poss, map(tuple, map(accumulate, map(_call, perms, s_perm))))
        return zip(ok, map(str.__mod__, templates, map(add, cums, zip(sums))), strict=True)

    def cap(self) -> int:
        """The most plans one scrape may rebuild (all; the time allowance bounds it, see ``_fix``)."""
        return max(MIN_REBUILDS, self.n)

    def _adapt(self, ok: list[bool]) -> None:
        """The budget from how many of the plans built by the last scrape this one used: all of them
        back where threads stay, halved where new threads keep coming (they were stale again)."""
        used = sum(map(ok.__getitem__, self.rebuilt))
        half = max(MIN_REBUILDS, self.budget // 2)
        self.budget = self.cap() if 2 * used >= len(self.rebuilt) else half
        self.rebuilt = []

    def _fix(self, texts: list[str], ok: list[bool], plain: list[bool], pipe_s: float) -> None:
        """The series whose plan was stale, or whose sum ``format_float`` may spell otherwise, the plain
        way (``le_counts``). Stale ones get a new plan for the next scrape (built under the same hold of
        their lock as the read), the first ``MIN_REBUILDS`` always, more while the time spent building
        plans stays within the allowance: ``REBUILD_MARGIN`` of what reading every series the plain way
        would take, plus what the pipeline saved this scrape against reading its series the plain way
        (nothing at idle, most of it under load, where a plain read is switched out every 5 ms). Both
        are estimated from this scrape's own plain reads. So no scrape costs much more than the plain
        read of every series, and plans come back in a few scrapes under load, ~15 idle."""
        budget = self.budget
        rebuilt: list[int] = []
        read = self.layout.le_counts  # the timer notes were folded when the scrape began
        served = sum(ok)
        plan_s = plain_s = allowance = 0.0
        for plain_n, i in enumerate(compress(range(self.n), map(not_, map(and_, ok, plain))), 1):
            t = perf_counter()
            if not ok[i] and budget and (len(rebuilt) < MIN_REBUILDS or plan_s < allowance):
                budget -= 1
                rebuilt.append(i)
                le, total, built_s = self.sets[i].read(partial(self._replan, i))
                plan_s += built_s
            else:
                le, total = self.sets[i].read(read)
                built_s = 0.0
            cum = list(accumulate(le))
            texts[i] = self.templates[i] % (*cum, cum[-1], format_float(total))
            plain_s += perf_counter() - t - built_s
            avg = plain_s / plain_n
            allowance = avg * REBUILD_MARGIN * self.n + max(0.0, avg * served - pipe_s)
        self.rebuilt = rebuilt

    def _replan(self, i: int, shards: tuple[HistogramShard, ...]) -> tuple[list[int], float, float]:
        """Series ``i``'s new plan, its ``le`` counts and sum, from ``shards`` (under its lock), and the
        seconds the plan took."""
        start = perf_counter()
        plan = build_plan(self.layout, shards)
        self.checks[i], self.expected[i], self.perms[i], self.poss[i], self.sums[i] = plan
        self.planned[i] = shards
        self.rebuilds += 1
        built_s = perf_counter() - start
        return (*self.layout.le_counts(shards), built_s)
