"""Side-by-side HTTP client benchmark on loopback: raw aiohttp, httpx, httpx2 (if installed) and ours.

    python bench/bench_http.py            # full: 5 interleaved rounds of 2000 GETs at concurrency 50
    python bench/bench_http.py --quick    # smoke: 2 rounds of 300 GETs
    python bench/bench_http.py --peers    # every peer (pyreqwest, rnet, curl_cffi, niquests, aiohttp,
                                          # httpx) at c=50 and c=500, then the HTTP/2 section; 3 rounds;
                                          # against the Python servers and nginx (where installed)
    python bench/bench_http.py --peers --server nginx --h2-server hypercorn   # pick the servers
    python bench/bench_http.py --cpu      # client CPU a request: ours on aiohttp and pyreqwest, peers

The fault server runs in its own process (``python -m infra.testing.fault_server``) so it doesn't share
the clients' GIL. Every client runs in every round, in rotated order, so drift (thermal, neighbours on the
machine) hits all of them alike; ours and raw aiohttp (16/6) run back to back in every round, and the
ratio of their rates is also reported per round (the load moves on the 2-core machines these run on, so
the per-round ratio is the steadier figure). Reported: req/s (median over rounds), latency p50 / p99 (all
rounds pooled), and ratios ours / peer. Extra sections: the flaky route (every 10th request 503 with
Retry-After: 0) success rate, and streaming time-to-first-byte p99 against raw aiohttp.

Ours runs with everything on: retries, retry budget, breaker, metrics. "aiohttp" uses the same connection
limits as ours (16 in all, 6 per host) so the ratio isolates the layer's cost; "aiohttp (defaults)"
shows what a user gets with a bare ClientSession (100 connections).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

Fetch = Callable[[str], Awaitable[int]]


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.testing.fault_server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.join(os.path.dirname(__file__), ".."),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"fault server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run_load(fetch: Fetch, url: str, total: int, concurrency: int) -> tuple[float, list[float], int]:
    """``total`` requests from ``concurrency`` workers; returns (req/s, latencies, successes)."""
    latencies: list[float] = []
    ok = 0
    remaining = total

    async def worker() -> None:
        nonlocal remaining, ok
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            try:
                status = await fetch(url)
            except Exception:
                status = 0
            latencies.append(time.perf_counter() - t0)
            if status == 200:
                ok += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start), latencies, ok


class Contender:
    def __init__(self, name: str) -> None:
        self.name = name
        self.rates: list[float] = []
        self.latencies: list[float] = []

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def fetch(self, url: str) -> int:
        raise NotImplementedError

    async def ttfb(self, url: str) -> float:
        raise NotImplementedError


class Aiohttp(Contender):
    def __init__(self, name: str, limit: int | None, per_host: int | None) -> None:
        super().__init__(name)
        self.limit, self.per_host = limit, per_host

    async def open(self) -> None:
        import aiohttp

        kw: dict[str, Any] = {}
        if self.limit is not None:
            kw = {"limit": self.limit, "limit_per_host": self.per_host}
        self.s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(**kw))

    async def close(self) -> None:
        await self.s.close()

    async def fetch(self, url: str) -> int:
        async with self.s.get(url) as r:
            await r.read()
            return r.status

    async def ttfb(self, url: str) -> float:
        t0 = time.perf_counter()
        async with self.s.get(url) as r:
            await r.content.readany()
            first = time.perf_counter() - t0
            await r.read()
        return first


class Httpx(Contender):
    def __init__(self, name: str, module: str) -> None:
        super().__init__(name)
        self.module = module

    async def open(self) -> None:
        import importlib

        self.c = importlib.import_module(self.module).AsyncClient()

    async def close(self) -> None:
        await self.c.aclose()

    async def fetch(self, url: str) -> int:
        r = await self.c.get(url)
        return int(r.status_code)


class Ours(Contender):
    async def open(self) -> None:
        from infra.http import AsyncPerfClient

        self.c = AsyncPerfClient()

    async def close(self) -> None:
        await self.c.aclose()

    async def fetch(self, url: str) -> int:
        return int((await self.c.get(url)).status)

    async def ttfb(self, url: str) -> float:
        t0 = time.perf_counter()
        async with self.c.stream("GET", url) as r:
            async for _ in r.aiter_bytes():
                first = time.perf_counter() - t0
                break
            await r.aread()
        return first


async def extras(base: str, quick: bool) -> dict[str, float]:
    """Open-breaker rejection cost, and deadline overshoot against a slow first byte."""
    from infra.http import AsyncPerfClient, BreakerConfig, CircuitOpenError, DeadlineExceeded, RetryConfig

    out: dict[str, float] = {}
    breaker = BreakerConfig(consecutive_failures=1, cooldown=600)
    async with AsyncPerfClient(retry=RetryConfig(attempts=0), breaker=breaker) as client:
        await client.get(base + "/status/500")
        n = 2000 if quick else 20000
        t0 = time.perf_counter()
        for _ in range(n):
            with contextlib.suppress(CircuitOpenError):
                await client.get(base + "/ok")
        out["reject_us"] = (time.perf_counter() - t0) / n * 1e6
    over: list[float] = []
    async with AsyncPerfClient() as client:
        for _ in range(20 if quick else 100):
            t0 = time.perf_counter()
            with contextlib.suppress(DeadlineExceeded):
                await client.get(base + "/slow-first-byte?delay=2", deadline=0.03)
            over.append(time.perf_counter() - t0 - 0.03)
    out["over_p50"], out["over_p99"] = pct(over, 0.5), pct(over, 0.99)

    def sync_over() -> list[float]:
        from infra.http import PerfClient

        got: list[float] = []
        with PerfClient() as client:
            for _ in range(20 if quick else 100):
                t0 = time.perf_counter()
                with contextlib.suppress(DeadlineExceeded):
                    client.get(base + "/slow-first-byte?delay=2", deadline=0.03)
                got.append(time.perf_counter() - t0 - 0.03)
        return got

    sync_o = await asyncio.to_thread(sync_over)
    out["sync_over_p50"], out["sync_over_p99"] = pct(sync_o, 0.5), pct(sync_o, 0.99)
    return out


def sync_round(fetch: Callable[[str], int], url: str, total: int, threads: int) -> float:
    """req/s of ``total`` GETs from ``threads`` threads sharing one sync client."""
    import threading

    left = [total]
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            fetch(url)

    start = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return total / (time.perf_counter() - start)


def sync_bench(base: str, rounds: int, total: int) -> dict[str, float]:
    """PerfClient against a bare httpx.Client (the sync peer), 16 threads, interleaved rounds."""
    import httpx

    from infra.http import PerfClient

    ours = PerfClient()
    peer = httpx.Client(limits=httpx.Limits(max_connections=16, max_keepalive_connections=16))
    contenders: dict[str, Callable[[str], int]] = {
        "httpx.Client": lambda u: peer.get(u).status_code,
        "ours (PerfClient)": lambda u: ours.get(u).status,
    }
    rates: dict[str, list[float]] = {k: [] for k in contenders}
    url = base + "/ok"
    for fetch in contenders.values():
        sync_round(fetch, url, 100, 16)
    for r in range(rounds):
        names = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for name in names:
            rates[name].append(sync_round(contenders[name], url, total, 16))
    ours.close()
    peer.close()
    return {k: statistics.median(v) for k, v in rates.items()}


def have(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


async def main(quick: bool, rounds: int = 0) -> None:
    rounds, total, conc = (2, 300, 50) if quick else (rounds or 5, 2000, 50)
    proc, base = start_server()
    try:
        contenders: list[Contender] = [
            Aiohttp("aiohttp", 16, 6),
            Aiohttp("aiohttp (defaults)", None, None),
            Httpx("httpx", "httpx"),
        ]
        if have("httpx2"):
            contenders.append(Httpx("httpx2", "httpx2"))
        ours = Ours("ours (AsyncPerfClient)")
        contenders.append(ours)
        for c in contenders:
            await c.open()
        url = base + "/ok"
        for c in contenders:  # warm-up: connections, imports, first-request paths
            await run_load(c.fetch, url, 100, conc)
        # Each round runs raw aiohttp (16/6) and ours back to back (order alternating), so the load on the
        # machine at that moment hits both alike and their ratio can be taken per round; the other clients
        # run around that pair in rotated order.
        raw = contenders[0]
        others = [c for c in contenders if c is not raw and c is not ours]
        paired: list[float] = []
        for r in range(rounds):
            pair = [raw, ours] if r % 2 == 0 else [ours, raw]
            rotated = others[r % len(others) :] + others[: r % len(others)]
            at = r % (len(others) + 1)
            order = rotated[:at] + pair + rotated[at:]
            for c in order:
                rate, lat, _ = await run_load(c.fetch, url, total, conc)
                c.rates.append(rate)
                c.latencies.extend(lat)
            paired.append(ours.rates[-1] / raw.rates[-1])

        # Flaky route: every 10th request 503 with Retry-After: 0.
        flaky: dict[str, float] = {}
        for c in (raw, ours):
            oks = sent = 0
            for _ in range(rounds):
                _, _, ok = await run_load(c.fetch, base + "/flaky?every=10", total, conc)
                oks += ok
                sent += total
            flaky[c.name] = oks / sent

        # Streaming time to first byte, 5 concurrent streams of 3 lines (under the 6-per-host limit, so
        # the figure is the client's own path, not time queued for a connection).
        ttfb: dict[str, list[float]] = {raw.name: [], ours.name: []}
        n_streams = 100 if quick else 500
        for r in range(rounds):
            for c in (raw, ours) if r % 2 == 0 else (ours, raw):
                sem = asyncio.Semaphore(5)

                async def one(c: Contender = c, sem: asyncio.Semaphore = sem) -> None:
                    async with sem:
                        ttfb[c.name].append(await c.ttfb(base + "/stream?chunks=3"))

                await asyncio.gather(*(one() for _ in range(n_streams)))
        extra = await extras(base, quick)
        sync_rates = await asyncio.to_thread(sync_bench, base, rounds, total // 2)
        for c in contenders:
            await c.close()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)

    ref = contenders[0]
    ref_rate = statistics.median(ref.rates)
    ref_p99 = pct(ref.latencies, 0.99)
    our_rate = statistics.median(ours.rates)
    our_p99 = pct(ours.latencies, 0.99)
    print(
        f"\nbench_http: {rounds} rounds x {total} GETs at concurrency {conc}, loopback, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus\n"
    )
    print("| client | req/s (median) | p50 ms | p99 ms | ours / client req/s | ours / client p99 |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in contenders:
        rate = statistics.median(c.rates)
        p99 = pct(c.latencies, 0.99)
        print(
            f"| {c.name} | {rate:,.0f} | {pct(c.latencies, 0.5) * 1e3:.2f} | {p99 * 1e3:.2f} | "
            f"{our_rate / rate:.2f}x | {our_p99 / p99:.2f}x |"
        )
    print()
    print("| flaky route (every 10th: 503, Retry-After: 0) | success rate |")
    print("|---|---:|")
    for name, rate in flaky.items():
        print(f"| {name} | {rate * 100:.2f}% |")
    print()
    t_raw, t_ours = pct(ttfb[raw.name], 0.99), pct(ttfb[ours.name], 0.99)
    print("| streaming TTFB (5 concurrent) | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for name, vals in ttfb.items():
        print(f"| {name} | {pct(vals, 0.5) * 1e3:.2f} | {pct(vals, 0.99) * 1e3:.2f} |")
    print()
    print("| sync, 16 threads | req/s (median) | ours / client |")
    print("|---|---:|---:|")
    ours_sync = sync_rates["ours (PerfClient)"]
    for name, rate in sync_rates.items():
        print(f"| {name} | {rate:,.0f} | {ours_sync / rate:.2f}x |")
    print()
    print(
        f"open breaker: {extra['reject_us']:.1f} us per rejected call (no I/O); deadline 30 ms vs 2 s first "
        f"byte: overshoot p50 {extra['over_p50'] * 1e3:.2f} ms, p99 {extra['over_p99'] * 1e3:.2f} ms "
        f"(PerfClient: p50 {extra['sync_over_p50'] * 1e3:.2f} ms, "
        f"p99 {extra['sync_over_p99'] * 1e3:.2f} ms)\n"
    )
    print(
        f"ours / aiohttp (16/6) req/s per round (run back to back): "
        f"{' '.join(f'{x:.2f}' for x in paired)}; median {statistics.median(paired):.2f}\n"
    )
    print(
        f"targets: req/s ours/aiohttp {our_rate / ref_rate:.2f} (median of the per-round ratios "
        f"{statistics.median(paired):.2f}) (>= 0.88); "
        f"p99 ours/aiohttp {our_p99 / ref_p99:.2f} (<= 1.5); flaky success {flaky[ours.name] * 100:.2f}% "
        f"(>= 99.9%); TTFB p99 delta {(t_ours - t_raw) * 1e3:+.2f} ms (<= 2 ms)"
    )


async def field(
    contenders: list[Any],
    ours: Any,
    url: str,
    rounds: int,
    total: int,
    conc: int,
    server_cpu: Callable[[], float] | None = None,
    usage: dict[str, float] | None = None,
) -> list[Row]:
    """Every peer ``rounds`` times in rotated order, each run paired with a run of ``ours`` right beside it
    (order alternating), so the ratio of each pair sees the same moment of a noisy machine; returns rows
    sorted fastest first, each with the median of its paired ratios ours / peer. A contender whose ``url``
    is set fetches that instead of ``url``. ``server_cpu`` (seconds of CPU the server has used) read
    around each run gives each row the server's CPU over that row's runs, in % of one core. ``usage``, when
    given, gets the seconds summed over the timed runs: wall, server, this process (the clients) and the
    whole box (``box_busy``), for ``usage_line``."""
    failed: dict[str, int] = {}
    paired: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}  # the row's [server CPU seconds, wall seconds], over its runs
    for c in contenders:
        c.rates, c.latencies = [], []
        failed[c.name], paired[c.name], cpu[c.name] = 0, [], [0.0, 0.0]
        await run_load(c.fetch, getattr(c, "url", None) or url, min(total, 500), conc)  # warm-up
    peers = [c for c in contenders if c is not ours]

    async def one(c: Any) -> float:
        c0 = server_cpu() if server_cpu else 0.0
        b0, p0, t0 = box_busy(), time.process_time(), time.perf_counter()
        rate, lat, ok = await run_load(c.fetch, getattr(c, "url", None) or url, total, conc)
        wall = time.perf_counter() - t0
        server = (server_cpu() - c0) if server_cpu else 0.0
        cpu[c.name][0] += server
        cpu[c.name][1] += wall
        if usage is not None:
            for key, value in (
                ("wall", wall),
                ("server", server),
                ("bench", time.process_time() - p0),
                ("box", box_busy() - b0),
            ):
                usage[key] = usage.get(key, 0.0) + value
        failed[c.name] += total - ok
        c.rates.append(rate)
        c.latencies.extend(lat)
        return rate

    for r in range(rounds):
        for i, c in enumerate(peers[r % len(peers) :] + peers[: r % len(peers)]):
            if (r + i) % 2 == 0:
                theirs = await one(c)
                mine = await one(ours)
            else:
                mine = await one(ours)
                theirs = await one(c)
            paired[c.name].append(mine / theirs)
    rows = [
        Row(
            c.name,
            statistics.median(c.rates),
            pct(c.latencies, 0.5),
            pct(c.latencies, 0.99),
            failed[c.name],
            statistics.median(paired[c.name]) if paired[c.name] else 1.0,
            cpu[c.name][0] / cpu[c.name][1] * 100 if server_cpu and cpu[c.name][1] else None,
        )
        for c in contenders
    ]
    return sorted(rows, key=lambda row: -row.rate)


def box_busy() -> float:
    """Seconds of CPU the whole machine has spent busy, all cores (/proc/stat: all but idle and iowait;
    steal included, the time the VM's host gave others while this one wanted it; 0 where there is no
    /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # guest is in user already


def usage_line(usage: dict[str, float]) -> str:
    """What the box did over a table's timed runs, in % of one core: busy in all, the server, this
    process (the clients), and the rest (neighbours, the kernel's share outside both): a server well under
    ~90 % on a box near 100 % x cores was held back by the box, not by its own work."""
    wall = usage.get("wall") or 1.0
    box, server, bench = (usage.get(k, 0.0) / wall * 100 for k in ("box", "server", "bench"))
    return (
        f"CPU over the timed runs, % of one core ({os.cpu_count()} cores): box busy {box:.0f}, "
        f"server {server:.0f}, this bench (the clients) {bench:.0f}, the rest {box - server - bench:.0f}"
    )


class Row(NamedTuple):
    name: str
    rate: float
    p50: float
    p99: float
    failed: int
    paired: float  # median over the pairs of ours' req/s / this client's, run back to back
    server_cpu: float | None = None  # the server's CPU over this row's runs, % of one core


def print_field(title: str, rows: list[Row], ours: str, other: str | None = None) -> None:
    """The table, fastest first. A failed request counts in its run's rate (it finished), so a client
    that failed requests shows the count. The ratio is the median of the back-to-back pairs; ``other``
    (ours on its other backend) gets a column of its own, ratios of medians (not paired). "server CPU"
    is the server process's CPU over the row's runs in % of one core: at ~90 % or more the server, not
    the client, set that row's rate."""
    mine = next(row for row in rows if row.name == ours)
    alt = next((row for row in rows if row.name == other), None)
    cpu = any(row.server_cpu is not None for row in rows)
    print(f"\n{title}\n")
    print(f"ours: {ours}" + (f"; other: {other}" if alt else ""))
    print("| client | req/s (median) |" + (" server CPU % |" if cpu else ""), end="")
    print(" p50 ms | p99 ms | failed | ours / client req/s (paired) |", end="")
    print(" ours / client p99 |" + (" other / client req/s | other / client p99 |" if alt else ""))
    print(
        "|---|---:|" + ("---:|" if cpu else "") + "---:|---:|---:|---:|---:|" + ("---:|---:|" if alt else "")
    )
    for row in rows:
        extra = f" {alt.rate / row.rate:.2f}x | {alt.p99 / row.p99:.2f}x |" if alt else ""
        server = "" if not cpu else " - |" if row.server_cpu is None else f" {row.server_cpu:.0f} |"
        print(
            f"| {row.name} | {row.rate:,.0f} |{server} {row.p50 * 1e3:.2f} | {row.p99 * 1e3:.2f} | "
            f"{row.failed} | {row.paired:.2f}x | {mine.p99 / row.p99:.2f}x |{extra}"
        )


def pick_servers(h1: str | None, h2: str | None) -> tuple[list[str], list[str], list[str]]:
    """``--server`` / ``--h2-server`` to (HTTP/1.1 servers, HTTP/2 servers, lines saying what was left
    out and why). Unset, ``--h2-server`` follows ``--server`` (aiohttp → hypercorn), and both unset
    mean the Python servers plus nginx where it is installed."""
    from http_peers import nginx_path

    python2 = {"aiohttp": "hypercorn", "nginx": "nginx", "both": "both"}
    h1 = h1 or "both"
    h2 = h2 or python2[h1]
    h1s = {"aiohttp": ["aiohttp"], "nginx": ["nginx"], "both": ["aiohttp", "nginx"]}[h1]
    h2s = {"hypercorn": ["hypercorn"], "nginx": ["nginx"], "both": ["hypercorn", "nginx"]}[h2]
    notes: list[str] = []
    if nginx_path() is None and ("nginx" in h1s or "nginx" in h2s):
        notes.append("skipped nginx: no nginx binary on PATH or in /usr/sbin (apt-get install nginx-light)")
        h1s = [name for name in h1s if name != "nginx"]
        h2s = [name for name in h2s if name != "nginx"]
    return h1s, h2s, notes


def open_server(name: str, stack: contextlib.ExitStack, nginx_streams: int) -> Any:
    """Server ``name`` started in its own process, torn down when ``stack`` closes; None (and the
    reason printed) when it doesn't start."""
    from http_peers import aiohttp_server, hypercorn_server, nginx_server

    starts: dict[str, Callable[[], Any]] = {
        "aiohttp": aiohttp_server,
        "hypercorn": hypercorn_server,
        "nginx": lambda: nginx_server(nginx_streams),
    }
    try:
        return stack.enter_context(starts[name]())
    except RuntimeError as exc:
        print(f"skipped {name}: {exc}")
        return None


async def peers_main(
    rounds: int,
    quick: bool,
    only: list[str],
    with_h2: bool,
    server: str | None = None,
    h2_server: str | None = None,
    h2_streams: int | None = None,
    nginx_streams: int = 0,
    exclude: tuple[str, ...] = (),
    with_h1: bool = True,
) -> None:
    """HTTP/1.1 against every installed peer at c=50 and c=500, then HTTP/2 (h2c), once a server picked
    (``pick_servers``); ``only`` keeps the HTTP/1.1 peers whose name contains one of its strings (more
    rounds of the front runners); ``h2_streams`` is passed to ours' HTTP/2 rows as
    ``http2_max_streams`` where HttpConfig has the field; ``nginx_streams`` is nginx's
    ``http2_max_concurrent_streams`` (0: ``http_peers.NGINX_STREAMS``); ``exclude`` drops the peers
    whose name contains one of its strings from every section (rnet 2.4.2 has aborted the whole process
    with a panic in its pool, wreq 5.3.0 pool.rs:651, twice on a loaded 2-core box)."""
    from http_peers import (
        NGINX_STREAMS,
        Ours,
        Pyreqwest,
        h1_peers,
        h2_peers,
        http_default,
        http_settings,
        missing,
    )

    nginx_streams = nginx_streams or NGINX_STREAMS
    h1_servers, h2_servers, notes = pick_servers(server, h2_server)
    print(
        f"bench_http --peers: {rounds} rounds, loadavg {os.getloadavg()[0]:.2f}, {os.cpu_count()} cpus; "
        f"HTTP/1.1 servers: {', '.join(h1_servers) if with_h1 else '-'}; "
        f"HTTP/2 servers: {', '.join(h2_servers) if with_h2 else '-'}"
    )
    for line in notes:
        print(line)
    h1, skipped = h1_peers()
    for line in skipped:
        print(line)
    if only:
        h1 = [c for c in h1 if any(o in c.name for o in only)]
    h1 = [c for c in h1 if not any(x in c.name for x in exclude)]
    ours = Ours("ours (AsyncPerfClient, all features, 16/6)")
    h1.append(ours)
    other = None
    if missing("pyreqwest") is None:
        # ours on the native backend: paired with the peers (the figure the issue asks about), the
        # aiohttp-backed one beside it in its own column
        other, ours = ours.name, Ours("ours, pyreqwest backend (all features, 16/6)", backend="pyreqwest")
        h1.append(ours)
    for name in h1_servers if with_h1 else []:
        with contextlib.ExitStack() as stack:
            srv = open_server(name, stack, nginx_streams)
            if srv is None:
                continue
            for c in h1:
                await c.open()
            for conc, total in ((50, 600 if quick else 2000), (500, 1000 if quick else 3000)):
                field_ = h1
                if conc > 100:
                    # httpx's pool (100 connections, 5 s pool timeout) fails most requests at c=500 (8,800
                    # of 9,000 in one run) and takes minutes doing it: left out there, and said so.
                    field_ = [c for c in h1 if not c.name.startswith("httpx")]
                    print("\nhttpx left out at c=500: its default pool timeout fails most requests there")
                title = f"HTTP/1.1, {srv.name} (own process), c={conc}, {total} GETs a run"
                await section(title, field_, ours, other, srv, srv.h1 + "/ok", rounds, total, conc)
            for c in h1:
                await c.close()
    if not with_h2:
        return

    settings: dict[str, Any] = {}
    if h2_streams is not None:
        settings, lines = http_settings(http2_max_streams=h2_streams)
        for line in lines:
            print(line)
    streams = settings.get("http2_max_streams", http_default("http2_max_streams"))
    for name in h2_servers:
        with contextlib.ExitStack() as stack:
            srv = open_server(name, stack, nginx_streams)
            if srv is None:
                continue
            hostport = srv.h2.split("//", 1)[1]
            h2, skipped = h2_peers(hostport, settings)
            h2 = [c for c in h2 if not any(x in c.name for x in exclude)]
            ours_h2, other_h2 = h2[-1], None
            if len(h2) > 1 and h2[-2].name.startswith("ours (host in"):
                ours_h2, other_h2 = h2[-2], h2[-1].name
            for line in skipped:
                print(line)
            # The server alone: the same client over HTTP/1.1 and HTTP/2 to the same server shows the
            # server's own HTTP/2 cost; ours over HTTP/1.1 to it is the floor the h2 path is held to.
            # (nginx answers HTTP/1.1 on a listener of its own: ``url``.)
            same = [Ours("ours (HTTP/1.1 to the same server)")]
            if missing("pyreqwest") is None:
                same.append(Pyreqwest("pyreqwest (HTTP/1.1 to the same server)", False))
            for c in same:
                c.url = srv.h1 + "/ok"
            h2 += same
            for c in h2:
                await c.open()
            print(
                f"\nours' HTTP/2 rows: http2_max_streams {streams}"
                if streams is not None
                else "\nours' HTTP/2 rows: this HttpConfig has no http2_max_streams"
            )
            for conc, total in ((50, 300 if quick else 1000), (500, 500 if quick else 1500)):
                title = f"HTTP/2 h2c ({srv.name}, own process), c={conc}, {total} GETs a run"
                await section(title, h2, ours_h2, other_h2, srv, srv.h2 + "/ok", rounds, total, conc)
            for c in h2:
                await c.close()
    await rotation_check(exclude=exclude)
    print(f"\nloadavg at the end {os.getloadavg()[0]:.2f}")


async def section(
    title: str,
    field_: list[Any],
    ours: Any,
    other: str | None,
    srv: Any,
    url: str,
    rounds: int,
    total: int,
    conc: int,
) -> None:
    """One table of ``--peers``: the field's paired runs against ``srv``, then the CPU line."""
    usage: dict[str, float] = {}
    rows = await field(field_, ours, url, rounds, total, conc, srv.cpu, usage)
    print_field(title, rows, ours.name, other)
    print(f"{usage_line(usage)}; loadavg {os.getloadavg()[0]:.2f}")


async def rotation_check(n: int = 1000, conc: int = 50, exclude: tuple[str, ...] = ()) -> None:
    """Every HTTP/2 client against a server that rotates connections (GOAWAY after 100 streams, as nginx's
    ``keepalive_requests``; the tests' ``RotatingH2Server``, in a thread of this process: a correctness
    check, not a timing): how many of ``n`` GETs come back 200."""
    import collections

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "http"))
    from http_h2_servers import RotatingH2Server
    from http_peers import h2_peers

    print(f"\nHTTP/2, server rotating connections every 100 streams: {n} GETs at c={conc} each\n")
    print("| client | 200s | errors | server: rotations / streams processed / left unprocessed |")
    print("|---|---:|---|---:|")
    names = [c.name for c in h2_peers("127.0.0.1:1")[0]]
    for i, name in enumerate(names):
        if any(x in name for x in exclude):
            continue
        with RotatingH2Server(rotate_every=100) as srv:
            c = h2_peers(f"127.0.0.1:{srv.port}")[0][i]
            await c.open()
            errs: collections.Counter[str] = collections.Counter()
            ok = 0
            sem = asyncio.Semaphore(conc)

            async def one(c: Any = c, sem: asyncio.Semaphore = sem, errs: Any = errs) -> None:
                nonlocal ok
                async with sem:
                    try:
                        status = await c.fetch(srv.url + "/a")
                    except Exception as exc:
                        errs[type(exc).__name__] += 1
                        return
                    ok += status == 200

            await asyncio.gather(*(one() for _ in range(n)))
            await c.close()
            shown = ", ".join(f"{k} {v}" for k, v in errs.items()) or "none"
            print(f"| {name} | {ok} | {shown} | {srv.rotations} / {srv.processed} / {srv.unprocessed} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds of 300 requests (smoke run)")
    ap.add_argument("--rounds", type=int, default=0, help="interleaved rounds (default 5; --peers: 3)")
    ap.add_argument("--peers", action="store_true", help="every peer at c=50/500, then HTTP/2 (h2c)")
    ap.add_argument(
        "--only", default="", help="--peers: comma-separated name parts of the HTTP/1.1 peers to run"
    )
    ap.add_argument("--no-h2", action="store_true", help="--peers: skip the HTTP/2 section")
    ap.add_argument("--no-h1", action="store_true", help="--peers: skip the HTTP/1.1 section")
    ap.add_argument(
        "--exclude",
        default="",
        help="--peers: comma-separated name parts of peers to drop from every section",
    )
    ap.add_argument(
        "--server",
        choices=("aiohttp", "nginx", "both"),
        help="--peers: the HTTP/1.1 server(s) (default: both where nginx is installed, else aiohttp)",
    )
    ap.add_argument(
        "--h2-server",
        choices=("hypercorn", "nginx", "both"),
        help="--peers: the HTTP/2 server(s) (default: follows --server; aiohttp picks hypercorn)",
    )
    ap.add_argument(
        "--h2-streams",
        type=int,
        help="--peers: http2_max_streams for ours' HTTP/2 rows (where HttpConfig has it; default: its own)",
    )
    ap.add_argument(
        "--nginx-streams",
        type=int,
        default=0,
        help="--peers: nginx's http2_max_concurrent_streams (default 128)",
    )
    ap.add_argument("--cpu", action="store_true", help="client CPU a request: ours on both backends, peers")
    args = ap.parse_args()
    if args.cpu:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from http_peers import cpu_per_request

        asyncio.run(cpu_per_request(args.rounds or 3))
    elif args.peers:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        only = [o for o in args.only.split(",") if o]
        asyncio.run(
            peers_main(
                args.rounds or (2 if args.quick else 3),
                args.quick,
                only,
                not args.no_h2,
                args.server,
                args.h2_server,
                args.h2_streams,
                args.nginx_streams,
                tuple(x for x in args.exclude.split(",") if x),
                not args.no_h1,
            )
        )
    else:
        asyncio.run(main(args.quick, args.rounds))
