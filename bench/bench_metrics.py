"""Metrics hot paths and rendering, side by side with prometheus_client in one run.

    python bench/bench_metrics.py            # full run (~1 minute): 21 interleaved rounds of 100k ops
    python bench/bench_metrics.py --quick    # smoke run (a few seconds)
    python bench/bench_metrics.py --only timer --rounds 41   # one case, more rounds

Cases (issue 2 targets, as ratio ours / prometheus_client):
  counter_inc          bound child .inc()                                    <= 0.40
  observe_1_thread     bound child .observe(v)                               <= 0.50
  observe_2_threads    two threads observing into one child (wall / total)    <= 0.50
  timer                `with timed("op")` vs `with hist.time()`              <= 0.35
  render_1000_series   1000 histogram series -> text (generate_latest)       <= 0.30
  render_1000_counters 1000 counter series -> text (no target; context)

Then (``--only scrape_under_load`` runs just this): a scrape of 1000 histogram series while two threads
observe into them, against the idle scrape of the same registry before the load (5 observations a series)
and after it (same state: the main thread's shard plus one per observing thread, ~10 keys each: a
thread steps 7 values per series over 1,000 series, so each series sees the same 10 values from it);
issue 18 target: under load <= 3x idle. "Under load" is the steady state: the 20 scrapes right after the
observers start (ours rebuilds a bounded number of per-series plans a scrape there) are printed apart,
median and worst, for both sides. Then the scraping thread's CPU, and its wait for the GIL under load
(wall - CPU, in switch intervals, and its voluntary context switches where Linux counts them) with the
floor the GIL model gives ours: (CPU under load + 2 switch intervals) / idle before.

``--only first_scrape_new_threads [--threads K]``: the first scrape after K new threads (default 4) each
touched every one of 1000 histogram series, idle and under the same load, against the old per-series
read (``plain_render``), then the scrapes while the plans come back (no peer side).

Rounds are interleaved (ours, peer, then peer, ours, ...) so drift on a shared machine hits both
sides alike; each figure is the median (and p99) over rounds of ns per operation. Micro-benchmarks
subtract the cost of the bare `for` loop that drives them (same for both sides). Both sides use the
same bucket boundaries and the same observed values.
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from operator import sub
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import prometheus_client as pc

from infra.metrics import DEFAULT_BUCKETS, MetricsRegistry, timed
from infra.metrics.exposition import render_text

try:
    import resource

    _RUSAGE_THREAD: int | None = getattr(resource, "RUSAGE_THREAD", None)  # Linux
except ImportError:  # Windows
    _RUSAGE_THREAD = None

TARGETS = {
    "counter_inc": 0.40,
    "observe_1_thread": 0.50,
    "observe_2_threads": 0.50,
    "timer": 0.35,
    "render_1000_series": 0.30,
    "render_1000_counters": None,
}


def _values(n: int) -> list[float]:
    rng = random.Random(42)
    return [rng.lognormvariate(math.log(0.05), 1.2) for _ in range(n)]


def _timeit(fn: Callable[[], int]) -> float:
    """ns per op of fn() (which returns how many ops it did), with the GC off while it runs."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        ops = fn()
        return (time.perf_counter_ns() - t0) / ops
    finally:
        gc.enable()


def build_cases(n: int) -> dict[str, tuple[Callable[[], int], Callable[[], int], Callable[[], int] | None]]:
    """name -> (ours, peer, loop-overhead baseline or None)."""
    ours = MetricsRegistry()
    peer = pc.CollectorRegistry()
    vals = _values(n)

    oc = ours.counter("bench_c_total", "c", ("a",)).labels("x")
    pcc = pc.Counter("bench_c", "c", ["a"], registry=peer).labels("x")
    oh = ours.histogram("bench_h_seconds", "h", ("a",)).labels("x")
    ph = pc.Histogram("bench_h_seconds", "h", ["a"], registry=peer, buckets=DEFAULT_BUCKETS).labels("x")
    o2 = ours.histogram("bench_h2_seconds", "h", ("a",)).labels("x")
    p2 = pc.Histogram("bench_h2_seconds", "h", ["a"], registry=peer, buckets=DEFAULT_BUCKETS).labels("x")
    pt = pc.Histogram("bench_t_seconds", "t", registry=peer, buckets=DEFAULT_BUCKETS)
    rng = range(n)

    def loop() -> int:
        for _ in rng:
            pass
        return n

    def loop_vals() -> int:
        for _ in vals:
            pass
        return n

    def inc_ours() -> int:
        inc = oc.inc
        for _ in rng:
            inc()
        return n

    def inc_peer() -> int:
        inc = pcc.inc
        for _ in rng:
            inc()
        return n

    def obs_ours() -> int:
        obs = oh.observe
        for v in vals:
            obs(v)
        return n

    def obs_peer() -> int:
        obs = ph.observe
        for v in vals:
            obs(v)
        return n

    def two_threads(observe: Callable[[float], None]) -> Callable[[], int]:
        half = vals[: n // 2]

        def run() -> int:
            start = threading.Barrier(3)

            def work() -> None:
                start.wait()
                for v in half:
                    observe(v)

            ts = [threading.Thread(target=work) for _ in range(2)]
            for t in ts:
                t.start()
            start.wait()
            for t in ts:
                t.join()
            return 2 * len(half)

        return run

    def timer_ours() -> int:
        for _ in rng:
            with timed("bench_op", registry=ours):
                pass
        return n

    def timer_peer() -> int:
        for _ in rng:
            with pt.time():
                pass
        return n

    # 1000 histogram series with the same observations on both sides.
    oreg, preg = MetricsRegistry(), pc.CollectorRegistry()
    orh = oreg.histogram("bench_req_seconds", "Requests.", ("route", "code"))
    prh = pc.Histogram(
        "bench_req_seconds", "Requests.", ["route", "code"], registry=preg, buckets=DEFAULT_BUCKETS
    )
    for i in range(1000):
        a, b = orh.labels(f"/r{i // 5}", str(200 + i % 5)), prh.labels(f"/r{i // 5}", str(200 + i % 5))
        for v in vals[i % 97 : i % 97 + 5]:
            a.observe(v)
            b.observe(v)
    creg, cpreg = MetricsRegistry(), pc.CollectorRegistry()
    occ = creg.counter("bench_calls_total", "Calls.", ("route",))
    pcc2 = pc.Counter("bench_calls", "Calls.", ["route"], registry=cpreg)
    for i in range(1000):
        occ.labels(f"/r{i}").inc(i)
        pcc2.labels(f"/r{i}").inc(i)

    def render(fn: Callable[[], object]) -> Callable[[], int]:
        def run() -> int:
            fn()
            return 1

        return run

    return {
        "counter_inc": (inc_ours, inc_peer, loop),
        "observe_1_thread": (obs_ours, obs_peer, loop_vals),
        "observe_2_threads": (two_threads(o2.observe), two_threads(p2.observe), None),
        "timer": (timer_ours, timer_peer, loop),
        "render_1000_series": (
            render(lambda: render_text(oreg)),
            render(lambda: pc.generate_latest(preg)),
            None,
        ),
        "render_1000_counters": (
            render(lambda: render_text(creg)),
            render(lambda: pc.generate_latest(cpreg)),
            None,
        ),
    }


def _p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]


def _fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few small rounds (smoke test)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 21, quick 3)")
    ap.add_argument("--n", type=int, default=None, help="operations per round (default 100000, quick 20000)")
    ap.add_argument(
        "--only",
        nargs="*",
        choices=[*sorted(TARGETS), "scrape_under_load", "first_scrape_new_threads"],
        help="run only these cases",
    )
    ap.add_argument("--threads", type=int, default=4, help="first_scrape_new_threads: new threads a round")
    args = ap.parse_args(argv)
    if args.only == ["scrape_under_load"]:
        scrape_under_load(args.rounds or (2 if args.quick else 5), args.quick)
        return 0
    if args.only == ["first_scrape_new_threads"]:
        first_scrape_new_threads(args.rounds or (2 if args.quick else 5), args.threads)
        return 0
    rounds = args.rounds or (3 if args.quick else 21)
    n = args.n or (20_000 if args.quick else 100_000)
    cases = build_cases(n)
    if args.only:
        cases = {k: v for k, v in cases.items() if k in args.only}
    results: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in cases}
    for _ in range(2 if not args.quick else 1):  # warm-up: first-touch shards, caches, CPU clocks
        for ours, peer, _base in cases.values():
            ours()
            peer()
    for r in range(rounds):
        for name, (ours, peer, base) in cases.items():
            overhead = _timeit(base) if base else 0.0
            order = [(0, ours), (1, peer)] if r % 2 == 0 else [(1, peer), (0, ours)]
            for side, fn in order:
                results[name][side].append(max(_timeit(fn) - overhead, 1e-9))
    rows = []
    for name, (o, p) in results.items():
        mo, mp = statistics.median(o), statistics.median(p)
        ratio = mo / mp
        target = TARGETS[name]
        verdict = "-" if target is None else ("yes" if ratio <= target else "NO")
        rows.append((name, mo, _p99(o), mp, _p99(p), ratio, target, verdict))
    print(f"python {sys.version.split()[0]}, prometheus_client {_pc_version()}, rounds={rounds}, n={n}")
    print()
    head = ("case", "ours (median)", "ours (p99)", "prometheus_client (median)", "peer (p99)", "ratio")
    print("| " + " | ".join(head) + " | target | met |")
    print("|---|---:|---:|---:|---:|---:|---:|:---:|")
    for name, mo, po, mp, pp, ratio, target, verdict in rows:
        t = "-" if target is None else f"<= {target:.2f}"
        print(
            f"| {name} | {_fmt_ns(mo)} | {_fmt_ns(po)} | {_fmt_ns(mp)} | {_fmt_ns(pp)} "
            f"| {ratio:.2f}x | {t} | {verdict} |"
        )
    if not args.only or "scrape_under_load" in args.only:
        scrape_under_load(args.rounds or (2 if args.quick else 5), args.quick)
    return 0


def scrape_under_load(rounds: int, quick: bool) -> None:
    """Scrape 1000 histogram series while 2 threads observe into them; ours and prometheus_client in
    turn (rounds alternate who goes first), each against its own idle scrape."""
    vals = _values(10_000)
    res: dict[str, dict[str, list[float]]] = {}
    cpu: dict[str, dict[str, list[float]]] = {}  # the scraping thread's own CPU (time.thread_time)
    waits: dict[str, list[int]] = {}  # the scraping thread's voluntary context switches a loaded scrape
    settle: dict[str, list[float]] = {}  # the scrapes right after the threads started, every round

    def scrape_ms(fn: Callable[[], object], n: int, side: str, phase: str) -> list[float]:
        out = []
        for _ in range(n):
            v = _voluntary_switches()  # read outside the timed span
            t, c = time.perf_counter(), time.thread_time()
            fn()
            out.append((time.perf_counter() - t) * 1e3)
            cpu.setdefault(side, {}).setdefault(phase, []).append((time.thread_time() - c) * 1e3)
            if phase == "under load":
                waits.setdefault(side, []).append(_voluntary_switches() - v)
        return out

    def one(side: str) -> None:
        if side == "ours":
            reg = MetricsRegistry()
            h = reg.histogram("bench_req_seconds", "Requests.", ("route", "code"))
            render: Callable[[], object] = lambda: render_text(reg)  # noqa: E731
        else:
            preg = pc.CollectorRegistry()
            h = pc.Histogram(
                "bench_req_seconds", "Requests.", ["route", "code"], registry=preg, buckets=DEFAULT_BUCKETS
            )
            render = lambda: pc.generate_latest(preg)  # noqa: E731
        kids = [h.labels(f"/r{i // 5}", str(200 + i % 5)) for i in range(1000)]
        for i, k in enumerate(kids):
            for v in vals[i % 97 : i % 97 + 5]:
                k.observe(v)
        n = 3 if quick else 7
        got = res.setdefault(side, {"idle before": [], "under load": [], "idle after": []})
        got["idle before"] += scrape_ms(render, n, side, "idle before")
        stop = threading.Event()

        def work(off: int) -> None:
            i = off
            while not stop.is_set():
                for k in kids:
                    k.observe(vals[i % 10_000])
                    i += 7

        ts = [threading.Thread(target=work, args=(j,)) for j in range(2)]
        for t in ts:
            t.start()
        time.sleep(0.5)  # every series has seen a few hundred values from each thread
        # The first scrapes after the observing threads first touched every series rebuild ours' plans
        # (a bounded number a scrape: infra.metrics._scrape); they are reported on their own, and the
        # "under load" figure is the steady state that follows, for both sides alike.
        settle.setdefault(side, []).extend(scrape_ms(render, 3 if quick else 20, side, "settling"))
        got["under load"] += scrape_ms(render, n, side, "under load")
        stop.set()
        for t in ts:
            t.join()
        got["idle after"] += scrape_ms(render, n, side, "idle after")

    for r in range(rounds):
        for side in ("ours", "prometheus_client") if r % 2 == 0 else ("prometheus_client", "ours"):
            one(side)
    print()
    print(
        "| scrape, 1000 histogram series | idle before (ms) | under load, 2 observing threads (ms) | "
        "idle after, same state (ms) | load / idle before | load / idle after |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for side, got in res.items():
        b, u, a = (statistics.median(got[k]) for k in ("idle before", "under load", "idle after"))
        print(f"| {side} | {b:.1f} | {u:.1f} | {a:.1f} | {u / b:.2f}x | {u / a:.2f}x |")
    print()
    print(
        "The settling scrapes right after the observers started (ms; the table's 'under load' follows them):"
    )
    for side, times in settle.items():
        print(f"  {side}: median {statistics.median(times):.1f}, worst {max(times):.1f}, over {len(times)}")
    print()
    print("Scrape CPU of the scraping thread (ms, median; wall - CPU under load = waiting for the GIL):")
    for side, got in cpu.items():
        b, u, a = (statistics.median(got[k]) for k in ("idle before", "under load", "idle after"))
        print(f"  {side}: idle before {b:.1f}, under load {u:.1f}, idle after {a:.1f}")
    # The GIL model (3.11, ARCHITECTURE.md): a scrape longer than one switch interval is switched out at
    # least once, and with two CPU-bound observers it waits about two of their switch intervals to get
    # the GIL back (the thread that asks for it is the last in line once). So under load takes about its
    # CPU under load plus two intervals, whatever the scrape does between its bytecodes.
    iv = sys.getswitchinterval() * 1e3
    b_ours = statistics.median(res["ours"]["idle before"])
    print()
    print(f"Waiting for the GIL under load (median of wall - CPU a scrape; switch interval {iv:g} ms):")
    for side, got in res.items():
        gap = statistics.median(list(map(sub, got["under load"], cpu[side]["under load"])))
        vol = statistics.median(waits[side]) if _RUSAGE_THREAD is not None else math.nan
        line = f"  {side}: {gap:.1f} ms = {gap / iv:.1f} intervals, {vol:g} voluntary context switches"
        if side == "ours":  # one switch a scrape (prometheus_client's loop is switched out every interval)
            busy = statistics.median(cpu[side]["under load"])
            line += f"; floor (CPU under load + 2 intervals) / idle before: {(busy + 2 * iv) / b_ours:.2f}x"
        print(line)


def _voluntary_switches() -> int:
    """The calling thread's voluntary context switches so far (each wait for the GIL is one or more); 0
    where the platform does not count them per thread."""
    if _RUSAGE_THREAD is None:
        return 0
    return int(resource.getrusage(_RUSAGE_THREAD).ru_nvcsw)


def plain_render(reg: MetricsRegistry) -> str:
    """The histograms of ``reg`` read the old way (before the plans, 583d20d): ``cumulative()`` under
    each series' lock, one Python step a series, into the same cached template."""
    from infra.metrics._core import Histogram
    from infra.metrics._names import format_float
    from infra.metrics._scrape import series_template

    out = []
    for m in reg.collect():
        assert isinstance(m, Histogram)
        for child in m.children():
            cum, total = child.cumulative()
            out.append(series_template(m, child) % (*cum, cum[-1], format_float(total)))
    return "\n".join(out)


def first_scrape_new_threads(rounds: int, k: int) -> None:
    """The first scrape after ``k`` new threads each touched every one of 1000 histogram series (a
    thread-per-request server), idle and while two threads observe: the old per-series read
    (``plain_render``) against this tree's ``render_text`` (its first scrape, then the median and worst of
    the next 15, while plans come back, then the 17th). Each round
    alternates which side scrapes first; a side's scrape follows its own batch of ``k`` new threads."""
    vals = _values(10_000)
    reg = MetricsRegistry()
    h = reg.histogram("bench_req_seconds", "Requests.", ("route", "code"))
    kids = [h.labels(f"/r{i // 5}", str(200 + i % 5)) for i in range(1000)]
    for i, c in enumerate(kids):
        for v in vals[i % 97 : i % 97 + 5]:
            c.observe(v)
    render_text(reg)
    render_text(reg)  # plans built: the steady state
    res: dict[tuple[str, str], list[float]] = {}
    seq = [0]

    def new_threads() -> None:
        def touch() -> None:
            off = seq[0] = seq[0] + 7
            for j, c in enumerate(kids):
                c.observe(vals[(j * 13 + off) % 10_000])

        ts = [threading.Thread(target=touch) for _ in range(k)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()  # gone: their shards fold into the base when the next new thread comes

    def timed_ms(fn: Callable[[], object]) -> float:
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3

    def side(name: str, phase: str) -> None:
        new_threads()
        if name == "old":  # stateless: its later scrapes are more samples, for the worst of 15
            res.setdefault((phase, "old per-series read"), []).append(timed_ms(lambda: plain_render(reg)))
            later = [timed_ms(lambda: plain_render(reg)) for _ in range(15)]
            res.setdefault((phase, "old per-series read, 15 more: worst"), []).append(max(later))
            return
        res.setdefault((phase, "this tree, first scrape"), []).append(timed_ms(lambda: render_text(reg)))
        later = [timed_ms(lambda: render_text(reg)) for _ in range(15)]
        res.setdefault((phase, "this tree, scrapes 2-16: median"), []).append(statistics.median(later))
        res.setdefault((phase, "this tree, scrapes 2-16: worst"), []).append(max(later))
        res.setdefault((phase, "this tree, 17th scrape"), []).append(timed_ms(lambda: render_text(reg)))

    for r in range(rounds):
        for phase in ("idle", "under load"):
            stop = threading.Event()

            def work(off: int, stop: threading.Event) -> None:
                i = off
                while not stop.is_set():
                    for c in kids:
                        c.observe(vals[i % 10_000])
                        i += 7

            n_load = 2 if phase == "under load" else 0
            ts = [threading.Thread(target=work, args=(j, stop)) for j in range(n_load)]
            for t in ts:
                t.start()
            for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
                side(name, phase)
            stop.set()
            for t in ts:
                t.join()
    print()
    print(f"| first scrape after {k} new threads touched all 1000 histogram series | idle (ms) | load (ms) |")
    print("|---|---:|---:|")
    rows = (
        "old per-series read",
        "old per-series read, 15 more: worst",
        "this tree, first scrape",
        "this tree, scrapes 2-16: median",
        "this tree, scrapes 2-16: worst",
        "this tree, 17th scrape",
    )
    for what in rows:
        i, u = (statistics.median(res[(p, what)]) for p in ("idle", "under load"))
        print(f"| {what} | {i:.1f} | {u:.1f} |")


def _pc_version() -> str:
    from importlib.metadata import version

    return version("prometheus_client")


if __name__ == "__main__":
    raise SystemExit(main())
