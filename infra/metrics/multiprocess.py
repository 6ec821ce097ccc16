"""One combined /metrics and ``get_stats()`` for an app served by N worker processes.

Turn it on by setting ``INFRA_METRICS_MULTIPROC_DIR`` to an empty directory private to the server (the
way prometheus_client's ``PROMETHEUS_MULTIPROC_DIR`` works) before the workers start, or by calling
``enable(directory)`` in each worker. Then, in every worker:

* a daemon thread writes the worker's snapshot (every series; histograms as their mergeable sketch
  buckets) to ``live-<pid>.json`` every ``PUBLISH_INTERVAL`` seconds and once more at exit (atomic
  rename: a reader sees a whole snapshot or the previous one);
* a /metrics scrape or ``get_stats()`` answers from a combined registry: this worker's own series read
  live, plus every other live worker's last snapshot, plus ``archive.json``;
* a snapshot whose worker has died (its pid is gone, or now belongs to a process started at another time)
  is folded into ``archive.json`` by the next scrape and deleted, under an ``flock`` that every publish
  also takes (so a worker's last write can't land between a scrape reading its file and deleting it);
* a worker answering a scrape publishes its own snapshot first, so the next scrape, whichever worker
  answers it, shows at least as much: combined counts never go down from one scrape to the next.

Combining: counters are summed; histograms merge exactly through their sketch buckets (so quantiles of
the combined series are those of one stream holding every worker's observations, and the ``le`` counts
add up); gauges by the gauge's ``aggregate`` rule over the *live* workers (``"sum"`` by default; the cache
store's entry and byte counts use ``"max"``, as every worker reads the same store). A dead worker's
counters and histograms are kept in the archive; its gauges are dropped (they described a process that no
longer exists). A forked child starts its counts at zero (the parent's are the parent's to publish).

Why not prometheus_client's multiprocess mode: it keeps one mmap file per process *and metric type* and
never folds the files of dead processes, so a scrape reads every file any worker ever wrote: users with
worker recycling report thousands of files and 40 s scrapes (prometheus/client_python#367, #568). Here a
scrape reads one file per live worker plus one archive whose size depends on the series, not on how many
workers have come and gone (bench/bench_metrics_multiprocess.py measures both after 200 restarts).
The price: another worker's numbers are up to ``PUBLISH_INTERVAL`` old, and a worker killed with SIGKILL
loses what it counted since its last publish.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import threading
from collections.abc import Iterator
from itertools import compress, count
from operator import add
from pathlib import Path
from typing import Any

from ._core import Gauge, Histogram
from ._registry import MetricsRegistry, get_metrics
from ._shards import HistogramShard

__all__ = ["ENV", "PUBLISH_INTERVAL", "MultiProcess", "active", "enable", "load_snapshot", "snapshot"]

log = logging.getLogger("infra.metrics")

ENV = "INFRA_METRICS_MULTIPROC_DIR"
#: seconds between two snapshots of one worker
PUBLISH_INTERVAL = 0.5
_ARCHIVE = "archive.json"
_LIVE = "live-"


# ---------------------------------------------------------------------------------------- snapshots
# A histogram series travels as its sketch counts over a *dense* run of keys (``lo`` and a list, zeros
# included): combining N workers is then one ``map(add, ...)`` over aligned lists per series (C speed)
# instead of a dict update per key, which is what keeps an archive of dead workers cheap to add in.


def _shard_state(sh: HistogramShard) -> dict[str, Any]:
    bins = sh.bins
    lo = min(bins) if bins else 0
    dense = [0] * ((max(bins) - lo + 1) if bins else 0)
    for k, c in bins.items():
        dense[k - lo] = c
    return {
        "lo": lo,
        "d": dense,
        "s": {str(k): list(p) for k, p in sh.split.items()},
        "z": sh.zero,
        "sum": sh.sum,
        "min": None if sh.min == math.inf else sh.min,
        "max": None if sh.max == -math.inf else sh.max,
    }


class _HistAcc:
    """One histogram series of many snapshots, added up."""

    __slots__ = ("dense", "lo", "max", "min", "split", "sum", "zero")

    def __init__(self) -> None:
        self.lo = 0
        self.dense: list[int] = []
        self.split: dict[int, list[int]] = {}
        self.zero = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, st: dict[str, Any]) -> None:
        d, lo = st["d"], int(st["lo"])
        if d:
            acc = self.dense
            if not acc:
                self.lo, self.dense = lo, list(d)
            else:
                new_lo = min(self.lo, lo)
                new_hi = max(self.lo + len(acc), lo + len(d))
                if new_lo < self.lo:
                    acc[:0] = [0] * (self.lo - new_lo)
                    self.lo = new_lo
                if len(acc) < new_hi - new_lo:
                    acc.extend([0] * (new_hi - new_lo - len(acc)))
                off = lo - new_lo
                acc[off : off + len(d)] = map(add, acc[off : off + len(d)], d)
        for k, parts in st["s"].items():
            mine = self.split.get(int(k))
            self.split[int(k)] = list(parts) if mine is None else list(map(add, mine, parts))
        self.zero += int(st["z"])
        self.sum += float(st["sum"])
        if st["min"] is not None and st["min"] < self.min:
            self.min = float(st["min"])
        if st["max"] is not None and st["max"] > self.max:
            self.max = float(st["max"])

    def shard(self) -> HistogramShard:
        sh = HistogramShard(None)
        d = self.dense
        sh.bins = dict(compress(zip(count(self.lo), d), d))  # the non-zero keys, built in C
        sh.split = self.split
        sh.zero, sh.sum, sh.min, sh.max = self.zero, self.sum, self.min, self.max
        return sh

    def state(self) -> dict[str, Any]:
        st = _shard_state(self.shard())
        return st


class _Combine:
    """Snapshots added up in plain containers, then built into a registry (or a snapshot) once."""

    def __init__(self) -> None:
        self.meta: dict[str, dict[str, Any]] = {}
        self.series: dict[str, dict[tuple[str, ...], Any]] = {}

    def add(self, snap: dict[str, Any], *, gauges: bool = True) -> None:
        for name, e in snap.get("metrics", {}).items():
            kind = e["kind"]
            if kind == "gauge" and not gauges:
                continue
            meta = self.meta.get(name)
            if meta is None:
                meta = self.meta[name] = {k: v for k, v in e.items() if k != "series"}
                self.series[name] = {}
            elif (meta["kind"], meta["labels"], meta.get("buckets")) != (kind, e["labels"], e.get("buckets")):
                # two workers disagree about a metric (a deploy half-way): keep the first definition
                log.warning("metrics: a worker's %s (%s) differs from another's; not combined", name, kind)
                continue
            out = self.series[name]
            if kind == "histogram":
                for lv, st in e["series"]:
                    key = tuple(lv)
                    acc = out.get(key)
                    if acc is None:
                        acc = out[key] = _HistAcc()
                    acc.add(st)
            elif kind == "counter":
                for lv, v in e["series"]:
                    key = tuple(lv)
                    out[key] = out.get(key, 0.0) + v
            else:
                rule = meta.get("aggregate", "sum")
                for lv, v in e["series"]:
                    key = tuple(lv)
                    old = out.get(key)
                    if old is None:
                        out[key] = v
                    elif rule == "sum":
                        out[key] = old + v
                    elif rule == "max":
                        out[key] = max(old, v)
                    else:
                        out[key] = min(old, v)

    def into(self, reg: MetricsRegistry, seen: set[Any] | None = None) -> MetricsRegistry:
        """Add everything into ``reg`` (counters and histograms add; gauges by their rule, ``seen``
        holding the gauge series already set there)."""
        seen = set() if seen is None else seen
        for name, meta in self.meta.items():
            kind, doc, labels = meta["kind"], meta.get("doc", ""), tuple(meta["labels"])
            try:
                if kind == "counter":
                    c = reg.counter(name, doc, labels)
                    for lv, v in self.series[name].items():
                        c.labels(*lv).inc(v)
                elif kind == "histogram":
                    h = reg.histogram(name, doc, labels, buckets=meta["buckets"])
                    for lv, acc in self.series[name].items():
                        h.labels(*lv).merge_state(acc.shard())
                else:
                    rule = meta.get("aggregate", "sum")
                    g = reg.gauge(name, doc, labels, aggregate=rule)
                    for lv, v in self.series[name].items():
                        child = g.labels(*lv)
                        key = (name, lv)
                        if rule == "sum":
                            child.inc(v)
                        elif key not in seen or (v > child.get() if rule == "max" else v < child.get()):
                            child.set(v)
                        seen.add(key)
            except ValueError as exc:
                log.warning("metrics: %s not combined: %s", name, exc)
        return reg

    def snapshot(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        for name, meta in self.meta.items():
            series = self.series[name]
            if meta["kind"] == "histogram":
                rows = [[list(lv), acc.state()] for lv, acc in series.items()]
            else:
                rows = [[list(lv), v] for lv, v in series.items()]
            metrics[name] = {**meta, "series": rows}
        return {"metrics": metrics}


def snapshot(registry: MetricsRegistry, *, gauges: bool = True) -> dict[str, Any]:
    """Every series of ``registry`` as a JSON-ready dict (collect hooks run first)."""
    metrics: dict[str, Any] = {}
    for m in registry.collect():
        if isinstance(m, Gauge) and not gauges:
            continue
        entry: dict[str, Any] = {"kind": m.kind, "doc": m.documentation, "labels": list(m.labelnames)}
        series: list[Any] = []
        if isinstance(m, Histogram):
            entry["buckets"] = list(m.buckets)
            for child in m.children():
                state = child.state()
                if state.count():
                    series.append([list(child.label_values), _shard_state(state)])
        else:
            if isinstance(m, Gauge):
                entry["aggregate"] = m.aggregate
            for plain in m.children():
                series.append([list(plain.label_values), plain.get()])
        entry["series"] = series
        metrics[m.name] = entry
    return {"metrics": metrics}


def load_snapshot(
    into: MetricsRegistry, snap: dict[str, Any], *, gauges: bool = True, seen: set[Any] | None = None
) -> None:
    """Add a snapshot's series into ``into``: counters and histograms add; gauges combine by their rule
    (``seen`` holds the gauge series already set in this combine, for "max" and "min")."""
    comb = _Combine()
    comb.add(snap, gauges=gauges)
    comb.into(into, seen)


# ------------------------------------------------------------------------------------------- liveness
def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()[19].decode()


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: the pid exists
    return start is None or _start_time(pid) in (None, start)


# ------------------------------------------------------------------------------------------ the worker
class MultiProcess:
    """This process's part: publish its snapshot, combine everyone's on read."""

    def __init__(self, directory: str | os.PathLike[str], registry: MetricsRegistry | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.registry = registry if registry is not None else get_metrics()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: str | None = None
        self._pid = os.getpid()
        self._start = _start_time(self._pid)
        self._failed_logged = False
        # One publish at a time: the exit's final snapshot must not be overwritten by an older one the
        # publishing thread took just before.
        self._publish_lock = threading.Lock()
        self._archive: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    # -- publishing -----------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.directory / f"{_LIVE}{self._pid}.json"

    def start(self) -> None:
        self._fold_previous_owner()
        self._thread = threading.Thread(target=self._run, name="infra-metrics-publish", daemon=True)
        self._thread.start()

    def _fold_previous_owner(self) -> None:
        """A file under this pid left by an earlier process (the pid was reused): archive it before our
        first publish would overwrite it, or that worker's counts would be lost."""
        try:
            with self._locked():
                snap = self._read(self.path)
                if snap is not None and snap.get("start") != self._start:
                    self._fold(self._read_archive(), [snap])
                    self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("metrics: could not check %s for an earlier worker's snapshot: %s", self.path, exc)

    def _run(self) -> None:
        while not self._stop.wait(PUBLISH_INTERVAL):
            self.publish()

    def publish(self) -> None:
        """Write this process's snapshot now (skipped when nothing changed since the last write)."""
        with self._publish_lock:
            self._publish()

    def _publish(self, doc: dict[str, Any] | None = None) -> None:
        """Write ``doc`` (default: a snapshot taken now) as this worker's file, under the directory lock.

        The lock is what keeps a scrape's read -> liveness check -> fold -> unlink of a dying worker's
        file whole: without it, a worker could write its last counts between another worker reading its
        older file and finding it dead, and the fold would keep the older counts and delete the newer.
        """
        try:
            if doc is None:
                doc = snapshot(self.registry)
            doc["pid"], doc["start"] = self._pid, self._start
            text = json.dumps(doc, separators=(",", ":"))
            if text == self._last and self.path.exists():
                return
            tmp = self.directory / f".tmp-{self._pid}-{threading.get_ident()}"
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
                fh.write(text)
            with self._locked():
                os.replace(tmp, self.path)
            self._last = text
        except Exception as exc:
            if not self._failed_logged:
                self._failed_logged = True
                log.warning("metrics: this worker's snapshot was not written to %s: %s", self.directory, exc)

    def after_fork_in_child(self) -> None:
        """A forked worker: counts start at zero, a file and a thread of its own."""
        self.registry.reset()
        self._pid = os.getpid()
        self._start = _start_time(self._pid)
        self._last = None
        self._stop = threading.Event()
        self._publish_lock = threading.Lock()
        self.start()

    # -- combining ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_bytes())  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None
        except ValueError as exc:
            log.warning("metrics: unreadable snapshot %s skipped: %s", path, exc)
            return None

    def combined(self) -> MetricsRegistry:
        """A new registry holding every worker's series: this one's live, the others' last snapshots,
        the dead ones' archive (dead workers found now are folded into it first)."""
        live: list[dict[str, Any]] = []
        # This worker's own series, published before the others are read: whichever worker answers
        # the next scrape then reads at least what this one shows, so combined counts never go down
        # from one scrape to the next (another worker's file is otherwise up to PUBLISH_INTERVAL old).
        # (A reader that never started publishing, such as a CLI, leaves no file behind.)
        with self._publish_lock:
            mine = snapshot(self.registry)
            if self._thread is not None:
                self._publish(dict(mine))
        with self._locked():
            dead: list[tuple[Path, dict[str, Any]]] = []
            for path in sorted(self.directory.glob(f"{_LIVE}*.json")):
                snap = self._read(path)
                if snap is None or snap.get("pid") == self._pid:
                    continue
                if _alive(int(snap["pid"]), snap.get("start")):
                    live.append(snap)
                else:
                    dead.append((path, snap))
            archive = self._read_archive()
            if dead:
                archive = self._fold(archive, [snap for _, snap in dead])
                for path, _ in dead:
                    path.unlink(missing_ok=True)
        comb = _Combine()
        if archive is not None:
            comb.add(archive, gauges=False)
        for snap in live:
            comb.add(snap)
        comb.add(mine)
        return comb.into(MetricsRegistry(max_series_per_metric=None))

    def _read_archive(self) -> dict[str, Any] | None:
        """The archive, parsed once per version of the file (it changes only when a worker dies)."""
        path = self.directory / _ARCHIVE
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        version = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._archive is not None and self._archive[0] == version:
            return self._archive[1]
        doc = self._read(path)
        if doc is not None:
            self._archive = (version, doc)
        return doc

    def _fold(self, archive: dict[str, Any] | None, dead: list[dict[str, Any]]) -> dict[str, Any]:
        comb = _Combine()
        if archive is not None:
            comb.add(archive, gauges=False)
        for snap in dead:
            comb.add(snap, gauges=False)
        doc = comb.snapshot()
        path = self.directory / _ARCHIVE
        tmp = self.directory / f".tmp-archive-{self._pid}"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            json.dump(doc, fh, separators=(",", ":"))
        os.replace(tmp, path)
        return doc

    def close(self) -> None:
        """Stop publishing; write the last snapshot."""
        self._stop.set()
        self.publish()


_active: MultiProcess | None = None
_lock = threading.Lock()


def enable(directory: str | os.PathLike[str], registry: MetricsRegistry | None = None) -> MultiProcess:
    """Combine this process's metrics with those of the other workers sharing ``directory``."""
    global _active
    with _lock:
        if _active is not None:
            return _active
        mp = MultiProcess(directory, registry)
        mp.registry._combiner = mp
        mp.start()
        mp.publish()
        atexit.register(mp.close)
        _active = mp
        return mp


def active() -> MultiProcess | None:
    """The multi-process mode of this process, if on."""
    return _active


def _after_fork_in_child() -> None:
    mp = _active
    if mp is not None:
        mp.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

_env_dir = os.environ.get(ENV)
if _env_dir:
    try:
        enable(_env_dir)
    except OSError as _exc:  # fail open: the worker runs, with its own numbers only
        log.error(
            "metrics: %s=%s is unusable (%s); this worker's /metrics shows only itself", ENV, _env_dir, _exc
        )
