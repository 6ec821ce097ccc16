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
  is folded into ``archive.json`` by the next scrape and deleted, under an ``flock``.

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
def _shard_state(sh: HistogramShard) -> dict[str, Any]:
    return {
        # keys and counts as two lists: JSON parses them several times faster than a dict of str keys
        "k": list(sh.bins),
        "c": list(sh.bins.values()),
        "s": {str(k): list(p) for k, p in sh.split.items()},
        "z": sh.zero,
        "sum": sh.sum,
        "min": None if sh.min == math.inf else sh.min,
        "max": None if sh.max == -math.inf else sh.max,
    }


def _shard_from(state: dict[str, Any]) -> HistogramShard:
    sh = HistogramShard(None)
    sh.bins = dict(zip(state["k"], state["c"], strict=True))
    sh.split = {int(k): [int(x) for x in p] for k, p in state["s"].items()}
    sh.zero = int(state["z"])
    sh.sum = float(state["sum"])
    sh.min = math.inf if state["min"] is None else float(state["min"])
    sh.max = -math.inf if state["max"] is None else float(state["max"])
    return sh


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
            for child in m.children():
                series.append([list(child.label_values), child.get()])
        entry["series"] = series
        metrics[m.name] = entry
    return {"metrics": metrics}


def load_snapshot(
    into: MetricsRegistry, snap: dict[str, Any], *, gauges: bool = True, seen: set[Any] | None = None
) -> None:
    """Add a snapshot's series into ``into``: counters and histograms add; gauges combine by their rule
    (``seen`` holds the gauge series already set in this combine, for "max" and "min")."""
    seen = set() if seen is None else seen
    for name, e in snap.get("metrics", {}).items():
        kind, doc, labels = e["kind"], e.get("doc", ""), tuple(e["labels"])
        try:
            if kind == "counter":
                c = into.counter(name, doc, labels)
                for lv, v in e["series"]:
                    if v:
                        c.labels(*lv).inc(v)
            elif kind == "histogram":
                h = into.histogram(name, doc, labels, buckets=e["buckets"])
                for lv, st in e["series"]:
                    h.labels(*lv).merge_state(_shard_from(st))
            elif kind == "gauge" and gauges:
                rule = e.get("aggregate", "sum")
                g = into.gauge(name, doc, labels, aggregate=rule)
                for lv, v in e["series"]:
                    child = g.labels(*lv)
                    key = (name, tuple(lv))
                    if rule == "sum":
                        child.inc(v)
                    elif key not in seen or (v > child.get() if rule == "max" else v < child.get()):
                        child.set(v)
                    seen.add(key)
        except ValueError as exc:  # two workers disagree about a metric (a deploy mid-way): keep the first
            log.warning("metrics: snapshot of %s not combined: %s", name, exc)


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
        self._thread = threading.Thread(target=self._run, name="infra-metrics-publish", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(PUBLISH_INTERVAL):
            self.publish()

    def publish(self) -> None:
        """Write this process's snapshot now (skipped when nothing changed since the last write)."""
        with self._publish_lock:
            self._publish()

    def _publish(self) -> None:
        try:
            doc = snapshot(self.registry)
            doc["pid"], doc["start"] = self._pid, self._start
            text = json.dumps(doc, separators=(",", ":"))
            if text == self._last and self.path.exists():
                return
            tmp = self.directory / f".tmp-{self._pid}-{threading.get_ident()}"
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
                fh.write(text)
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
        out = MetricsRegistry(max_series_per_metric=None)
        if archive is not None:
            # First, into the empty registry: its histogram buckets are copied in one C call per series
            # rather than added key by key, so the archive of any number of dead workers costs a scrape
            # less than one live worker does (and it is parsed once per version of the file).
            load_snapshot(out, archive, gauges=False)
        seen: set[Any] = set()
        for snap in live:
            load_snapshot(out, snap, seen=seen)
        load_snapshot(out, snapshot(self.registry), seen=seen)
        return out

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
        reg = MetricsRegistry(max_series_per_metric=None)
        if archive is not None:
            load_snapshot(reg, archive, gauges=False)
        for snap in dead:
            load_snapshot(reg, snap, gauges=False)
        doc = snapshot(reg, gauges=False)
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
    enable(_env_dir)
