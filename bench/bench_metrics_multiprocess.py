"""Scrape cost of a multi-process server: ours (infra.metrics.multiprocess) vs prometheus_client's
multiprocess mode, on the same load, for 1, 4 and 8 live workers and after 200 worker restarts.

    python bench/bench_metrics_multiprocess.py            # full run (~1 minute)
    python bench/bench_metrics_multiprocess.py --quick    # smoke run (fewer restarts and repeats)

Each worker is a forked process that does the same load on both sides (10 counter series, 10 histogram
series x 200 observations, one gauge), publishes, and stays alive until the scrape timings are done.
A scrape is what /metrics does in one worker: ours ``MultiProcess.combined()`` + text rendering;
prometheus_client ``MultiProcessCollector`` + ``generate_latest``. Restarts: two directories with 4 live
workers each; in one, 200 short-lived workers then come and go (prometheus_client's documented
``mark_process_dead`` is called for each, as its gunicorn ``child_exit`` hook does); both are scraped
interleaved, so "after / before" is measured in the same moments of a shared machine.
Figures: median over interleaved repeats of ms per scrape, each after a ``gc.collect()`` (the first scrape
after the restarts, which folds the dead workers' snapshots into the archive, is reported on its own).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# prometheus_client picks its value class at import: multiprocess mode needs the variable set by then
# (each worker points it at its own directory before making its metrics).
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.gettempdir())

import prometheus_client as pc
from prometheus_client import multiprocess as pc_mp

from infra.metrics import MetricsRegistry
from infra.metrics.exposition import render_text
from infra.metrics.multiprocess import MultiProcess, enable

N_SERIES = 10
N_OBS = 200


def _load_ours(directory: str) -> None:
    m = enable(directory)
    reg = m.registry
    c = reg.counter("bench_requests_total", "Requests.", ("route",))
    h = reg.histogram("bench_latency_seconds", "Latency.", ("route",))
    g = reg.gauge("bench_inflight", "In flight.")
    for s in range(N_SERIES):
        c.labels(f"r{s}").inc(N_OBS)
        child = h.labels(f"r{s}")
        for i in range(N_OBS):
            child.observe(0.001 * (i + 1))
    g.set(1)
    m.close()


def _load_pc(directory: str) -> None:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory  # in this worker only: read as its values are made
    c = pc.Counter("bench_requests_total", "Requests.", ("route",))
    h = pc.Histogram("bench_latency_seconds", "Latency.", ("route",))
    g = pc.Gauge("bench_inflight", "In flight.", multiprocess_mode="livesum")
    for s in range(N_SERIES):
        c.labels(f"r{s}").inc(N_OBS)
        child = h.labels(f"r{s}")
        for i in range(N_OBS):
            child.observe(0.001 * (i + 1))
    g.set(1)


def _worker(side: str, directory: str, ready: Any, stop: Any) -> None:
    if side == "ours":
        _load_ours(directory)
    else:
        _load_pc(directory)
    ready.set()
    stop.wait()
    os._exit(0)


def _short_worker(side: str, directory: str) -> None:
    if side == "ours":
        _load_ours(directory)
    else:
        _load_pc(directory)
    os._exit(0)


def _scrape_ours(directory: str) -> Callable[[], int]:
    here = MultiProcess(directory, MetricsRegistry())
    return lambda: len(render_text(here.combined()))


def _scrape_pc(directory: str) -> Callable[[], int]:
    def scrape() -> int:
        reg = pc.CollectorRegistry()
        pc_mp.MultiProcessCollector(reg, path=directory)
        return len(pc.generate_latest(reg))

    return scrape


def _interleaved_ms(fns: dict[str, Callable[[], int]], repeats: int) -> dict[str, float]:
    """Median ms per call of each fn, rounds interleaved (so a loaded box's drift hits all alike)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats):
        order = list(fns) if r % 2 == 0 else list(reversed(fns))
        for k in order:
            gc.collect()  # one side's garbage (prometheus_client makes plenty) is not the other's cost
            t0 = time.perf_counter()
            fns[k]()
            times[k].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


class Fleet:
    """Live workers of one side, kept alive until ``close``."""

    def __init__(self, side: str, directory: str, n: int) -> None:
        ctx = mp.get_context("fork")
        self.stop = ctx.Event()
        self.procs = []
        for _ in range(n):
            ready = ctx.Event()
            p = ctx.Process(target=_worker, args=(side, directory, ready, self.stop))
            p.start()
            ready.wait(60)
            self.procs.append(p)

    def close(self) -> None:
        self.stop.set()
        for p in self.procs:
            p.join(30)


def _dir(side: str) -> str:
    return tempfile.mkdtemp(prefix=f"bench-{side}-mp-")


def _restart(side: str, directory: str, n: int) -> None:
    ctx = mp.get_context("fork")
    for _ in range(n):
        p = ctx.Process(target=_short_worker, args=(side, directory))
        p.start()
        p.join(60)
        if side == "pc":
            pc_mp.mark_process_dead(p.pid, directory)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer restarts and repeats (smoke test)")
    args = ap.parse_args(argv)
    repeats = 5 if args.quick else 21
    restarts = 20 if args.quick else 200
    rows: list[tuple[str, float, float]] = []
    for workers in (1, 4, 8):
        dirs = {side: _dir(side) for side in ("ours", "pc")}
        fleets = [Fleet(side, dirs[side], workers) for side in ("ours", "pc")]
        scrapes = {"ours": _scrape_ours(dirs["ours"]), "pc": _scrape_pc(dirs["pc"])}
        for fn in scrapes.values():
            fn()
        res = _interleaved_ms(scrapes, repeats)
        for f in fleets:
            f.close()
        for d in dirs.values():
            shutil.rmtree(d, ignore_errors=True)
        rows.append((f"scrape, {workers} live worker(s)", res["ours"], res["pc"]))
    # Restarts: per side, two directories with 4 live workers each, one of which then sees `restarts`
    # workers come and go; the two are scraped interleaved, so the ratio is immune to the box's drift.
    before: dict[str, float] = {}
    after: dict[str, float] = {}
    first_after: dict[str, float] = {}
    files: dict[str, int] = {}
    for side in ("ours", "pc"):
        fresh, churned = _dir(side), _dir(side)
        fleets = [Fleet(side, fresh, 4), Fleet(side, churned, 4)]
        make = _scrape_ours if side == "ours" else _scrape_pc
        scrapes = {"fresh": make(fresh), "churned": make(churned)}
        scrapes["fresh"]()
        scrapes["churned"]()
        _restart(side, churned, restarts)
        t0 = time.perf_counter()
        scrapes["churned"]()
        first_after[side] = (time.perf_counter() - t0) * 1000
        res = _interleaved_ms(scrapes, repeats)
        before[side], after[side] = res["fresh"], res["churned"]
        files[side] = sum(1 for f in Path(churned).iterdir() if not f.name.startswith("."))
        for f in fleets:
            f.close()
        shutil.rmtree(fresh, ignore_errors=True)
        shutil.rmtree(churned, ignore_errors=True)
    rows.append(("scrape, 4 live workers, no restarts", before["ours"], before["pc"]))
    rows.append(
        (f"first scrape after {restarts} restarts (ours folds them)", first_after["ours"], first_after["pc"])
    )
    rows.append((f"scrape, 4 live workers, after {restarts} restarts", after["ours"], after["pc"]))
    print(f"python {sys.version.split()[0]}, prometheus_client {pc_version()}, repeats={repeats}")
    print()
    print("| case | ours ms | prometheus_client ms | ratio |")
    print("|---|---:|---:|---:|")
    for name, ours, peer in rows:
        print(f"| {name} | {ours:.2f} | {peer:.2f} | {ours / peer:.2f}x |")
    print()
    for side, label in (("ours", "ours"), ("pc", "prometheus_client")):
        growth = after[side] / before[side]
        print(
            f"{label}: after {restarts} restarts a scrape takes {growth:.2f}x the first; files {files[side]}"
        )
    return 0


def pc_version() -> str:
    from importlib.metadata import version

    return version("prometheus_client")


if __name__ == "__main__":
    raise SystemExit(main())
