"""An in-process ring of metric snapshots with bounded memory: what the /dashboard charts draw from.

A ``MetricsHistory`` calls a ``sample`` function every ``interval`` seconds from a daemon thread and
keeps the last ``window`` seconds of what it returned (a flat ``{column: number}`` mapping). Storage is
columnar: one ``array('d')`` of ``capacity = window / interval`` slots per column plus one for the
timestamps, written round-robin. Memory is therefore fixed up front by ``capacity`` and ``max_columns``
(``nbytes()`` says what it holds; BENCHMARKS.md has the figures), whatever the process does: a column
that appears later reads NaN for the samples before it. When a new column arrives and ``max_columns``
are held, it takes the place of the column whose value has stayed the same longest (a series that
stopped moving, e.g. an operation not called since, shows nothing a chart needs); only when every held
column changed in this very sample is the new one dropped and counted in ``dropped_columns``. A
long-lived process therefore keeps charting what it does now, not what it did first.

Readers ask for what is new since the sequence number they last saw (``since``), so a page refreshing
every few seconds costs the observed process a copy of a few rows, not of the whole hour.

    history = MetricsHistory(sample=lambda: {"hits": 3.0}, interval=2.0, window=3600.0)
    history.start()          # idempotent; restarted after fork (the thread doesn't survive it)
    page = history.since(0)  # HistoryPage(seq=..., t=[...], columns={"hits": [...]})
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_HISTORY_INTERVAL",
    "DEFAULT_HISTORY_MAX_COLUMNS",
    "DEFAULT_HISTORY_WINDOW",
    "HistoryPage",
    "MetricsHistory",
]

log = logging.getLogger("infra.metrics")

# One sample every 2 s for an hour: 1800 rows, 14.4 KB per column. Finer would show a 10-second
# demo pass in more points but double the memory and the sampling cost for every process that serves.
DEFAULT_HISTORY_INTERVAL = 2.0
DEFAULT_HISTORY_WINDOW = 3600.0
# Columns are series x what is kept of them (5 per latency series): 400 columns is ~80 operations,
# namespaces and origins together; 5.8 MB at the most with the defaults (typical pages use < 100).
DEFAULT_HISTORY_MAX_COLUMNS = 400

_NAN = math.nan


def _same(a: float, b: float) -> bool:
    """Equal, counting NaN (no value in this interval) as equal to NaN."""
    return a == b or (a != a and b != b)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Samples newer than a reader's last ``seq``, oldest first.

    ``seq`` is the sequence number of the newest sample included (pass it back as ``since``);
    ``t`` the wall-clock times (Unix seconds); ``columns`` one list per column aligned with ``t``,
    NaN where a column had no value in that sample. ``reset`` is true when the reader's ``since``
    was older than the ring holds (or from another ring's life), so it must drop what it had.
    """

    seq: int
    t: list[float]
    columns: dict[str, list[float]]
    reset: bool


class MetricsHistory:
    """A bounded ring of ``{column: value}`` samples taken every ``interval`` seconds."""

    def __init__(
        self,
        sample: Callable[[], Mapping[str, float] | None],
        *,
        interval: float = DEFAULT_HISTORY_INTERVAL,
        window: float = DEFAULT_HISTORY_WINDOW,
        max_columns: int = DEFAULT_HISTORY_MAX_COLUMNS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (isinstance(interval, (int, float)) and 0 < interval < math.inf):
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        if not (isinstance(window, (int, float)) and interval <= window < math.inf):
            raise ValueError(f"window must be at least interval ({interval}) seconds, got {window!r}")
        if not (isinstance(max_columns, int) and max_columns >= 1):
            raise ValueError(f"max_columns must be an integer >= 1, got {max_columns!r}")
        self.interval = float(interval)
        self.window = float(window)
        self.capacity = max(1, round(window / interval))
        self.max_columns = max_columns
        self._sample = sample
        self._clock = clock
        self._lock = threading.Lock()
        self._t = array("d", [_NAN]) * self.capacity
        self._columns: dict[str, array[float]] = {}
        # seq of the sample in which each column's value last changed (or the column appeared): the
        # column flat the longest is the one a new column replaces when the ring is full.
        self._changed: dict[str, int] = {}
        self._evicted: dict[str, float] = {}  # name -> value when it made room (see _evict_flattest)
        self.evicted_columns = 0
        self._seq = 0  # samples recorded so far; the newest sits at slot (_seq - 1) % capacity
        self.dropped_columns = 0
        self.failed_samples = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid = os.getpid()
        # Names this ring's life: a reader holding a ``seq`` from another ring (a restarted worker
        # behind the same URL) sees a different epoch and starts over instead of mixing the two.
        self.epoch = f"{os.getpid()}-{time.time_ns()}"

    # -- writing -----------------------------------------------------------------------------

    def record(self, values: Mapping[str, float], t: float | None = None) -> int:
        """Store one sample (``t`` defaults to now); return its sequence number."""
        now = self._clock() if t is None else t
        with self._lock:
            slot = self._seq % self.capacity
            self._t[slot] = now
            seen = 0
            prev = (self._seq - 1) % self.capacity
            changed, evicted = self._changed, self._evicted
            for name, value in values.items():
                col = self._columns.get(name)
                if col is None:
                    if name in evicted:
                        if _same(evicted[name], value):
                            continue  # still flat since it made room: stays out
                        del evicted[name]
                    if len(self._columns) >= self.max_columns and not self._evict_flattest():
                        self.dropped_columns += 1
                        continue
                    col = self._columns[name] = array("d", [_NAN]) * self.capacity
                    changed[name] = self._seq
                elif not _same(col[prev], value):
                    changed[name] = self._seq
                col[slot] = value
                seen += 1
            if seen < len(self._columns):  # a column this sample didn't mention reads NaN here
                for name, col in self._columns.items():
                    if name not in values:
                        col[slot] = _NAN
            self._seq += 1
            return self._seq

    def _evict_flattest(self) -> bool:
        """Drop the column unchanged the longest, unless every column changed in this sample (caller
        holds the lock)."""
        name = min(self._changed, key=self._changed.__getitem__, default=None)
        if name is None or self._changed[name] >= self._seq:
            return False
        col = self._columns.pop(name)
        del self._changed[name]
        # Remember its last value: it comes back only once it moves, or a flat series evicted now would
        # return next sample and push out another (bounded: the oldest tombstones go first).
        self._evicted[name] = col[(self._seq - 1) % self.capacity]
        if len(self._evicted) > 10 * self.max_columns:
            del self._evicted[next(iter(self._evicted))]
        self.evicted_columns += 1
        return True

    def sample_now(self) -> int | None:
        """Take one sample through ``sample`` and record it; None (and counted) if sampling raised.

        ``sample`` returning None means its source is gone (a registry collected): sampling stops.
        """
        try:
            values = self._sample()
        except Exception:  # the observed process must never notice: count it, log the first
            self.failed_samples += 1
            if self.failed_samples == 1:
                log.exception("metrics history: taking a sample failed (logged once)")
            return None
        if values is None:
            self._stop.set()
            return None
        return self.record(values)

    # -- reading -----------------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """Sequence number of the newest sample (0 before the first)."""
        return self._seq

    def since(self, seq: int = 0) -> HistoryPage:
        """The samples after ``seq`` that the ring still holds, oldest first."""
        with self._lock:
            newest = self._seq
            oldest = max(0, newest - self.capacity)  # samples oldest+1 .. newest are held
            reset = seq < oldest or seq > newest
            start = oldest if reset else seq
            slots = [i % self.capacity for i in range(start, newest)]
            t = [self._t[s] for s in slots]
            columns = {name: [col[s] for s in slots] for name, col in self._columns.items()}
        return HistoryPage(seq=newest, t=t, columns=columns, reset=reset)

    def nbytes(self) -> int:
        """Bytes the ring's arrays hold (the fixed part; column names and dict slots come on top)."""
        with self._lock:
            arrays = [self._t, *self._columns.values()]
        return sum(a.itemsize * len(a) for a in arrays)

    def max_nbytes(self) -> int:
        """The most ``nbytes()`` can ever be: ``(max_columns + 1) * capacity * 8``."""
        return (self.max_columns + 1) * self.capacity * 8

    # -- the sampling thread -----------------------------------------------------------------

    def start(self) -> MetricsHistory:
        """Start sampling every ``interval`` seconds on a daemon thread (idempotent, fork-aware)."""
        with self._lock:
            if os.getpid() != self._pid:  # forked: the parent's thread and lock state didn't come along
                self._pid = os.getpid()
                self.epoch = f"{os.getpid()}-{time.time_ns()}"
                self._thread = None
                self._stop = threading.Event()
            if self._thread is not None and self._thread.is_alive():
                return self
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="infra-metrics-history", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the sampling thread (the samples stay readable)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and os.getpid() == self._pid

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the sampling thread to end (it ends by itself once its
        registry is gone, or after ``stop``); True if no thread runs now."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return not self.running

    def _run(self) -> None:
        # Sample on the interval's grid (not interval after the last sample ended), so samples stay
        # evenly spaced however long one takes.
        next_at = time.monotonic()
        while True:
            self.sample_now()
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a suspended laptop, a long GC): skip, don't burst
                next_at = time.monotonic() + self.interval
                delay = self.interval
            if self._stop.wait(delay):
                return

    def __repr__(self) -> str:
        return (
            f"MetricsHistory(interval={self.interval}, window={self.window}, "
            f"columns={len(self._columns)}, samples={min(self._seq, self.capacity)})"
        )
