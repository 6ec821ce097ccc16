"""The HTTP layer under faults, measured the way issue 17 states its goals, on every backend.

    python bench/bench_http_faults.py            # all sections (~1-2 min on a 2-core box)
    python bench/bench_http_faults.py --quick    # smaller counts

Sections (servers on 127.0.0.1, everything counted at the server):

* amplification: N calls, every try failing (TCP reset / 503 / 429 with Retry-After: 0), budget on with its
  defaults, breaker off: requests the server received / calls offered (goal <= 1.2x), and whether the
  server received exactly the tries the calls reported (``history``).
* connections: calls over 4 origins, 48 at a time: most TCP connections open at once, idle keep-alive ones
  included (goal <= max_connections 16 in all, <= max_per_host 6 per origin), and connections opened;
  then the sync client's churn: 40 requests over 4 hosts from 16 threads, connections opened (8 runs),
  and 800 requests the same way: connections opened and wall time (5 runs).
* memory: rounds of 10,000 calls queued and then cancelled: Python heap (tracemalloc) and RSS per round.
* /metrics threads: threads the endpoint runs while 200 connections sit half-open.

Run it against another tree (e.g. main) with ``PYTHONPATH=<that tree>`` to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import socket
import statistics
import sys
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from infra.http import (
    AsyncPerfClient,
    BreakerConfig,
    HTTPError,
    PerfClient,
    RetryBudgetConfig,
    RetryConfig,
)
from infra.testing.fault_server import ConnectionGauge, FaultServer

BACKENDS = ("aiohttp", "httpx (async)", "sync")
FAST = RetryConfig(backoff=(0.001, 0.002, 0.004), jitter=0)


def make(backend: str, **kw: Any) -> Any:
    if backend == "sync":
        return PerfClient(**kw)
    if backend == "httpx (async)":
        return AsyncPerfClient(backend="httpx", **kw)
    return AsyncPerfClient(**kw)


async def close(client: Any) -> None:
    if isinstance(client, PerfClient):
        client.close()
    else:
        await client.aclose()


# The sync client runs in threads of its own: asyncio's default executor has only cpu + 4 of them.
_THREADS = ThreadPoolExecutor(64)


async def call(client: Any, url: str) -> Any:
    if isinstance(client, PerfClient):
        return await asyncio.get_running_loop().run_in_executor(_THREADS, client.get, url)
    return await client.get(url)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- amplification ----------------------------------------------------------------------------------------


async def amplification(n: int) -> None:
    print(f"\n## amplification: {n} calls, every try fails, budget on (ratio 0.2, 10/s reserve), breaker off")
    print(f"{'backend':16} {'fault':18} {'received':>9} {'ratio':>6} {'reported':>9}  received == reported")
    for backend in BACKENDS:
        for fault in ("reset", "503", "429 Retry-After 0"):
            with FaultServer() as server:
                client = make(
                    backend,
                    retry=FAST,
                    breaker=BreakerConfig(enabled=False),
                    retry_budget=RetryBudgetConfig(),
                )
                key = f"{fault[:3]}{backend[:3]}"
                path, counter = {
                    "reset": (f"/reset-before-headers/{key}", f"reset-before-headers/{key}"),
                    "503": (f"/fail/{key}?n=1000000000&code=503", f"fail/{key}"),
                    "429 Retry-After 0": (f"/fail/{key}?n=1000000000&code=429&retry_after=0", f"fail/{key}"),
                }[fault]
                reported = 0
                sem = asyncio.Semaphore(50)

                async def one(client: Any = client, url: str = server.url + path, sem: Any = sem) -> None:
                    nonlocal reported
                    async with sem:
                        try:
                            r = await call(client, url)
                            reported += len(r.history) or 1
                        except HTTPError as exc:
                            reported += len(exc.history)

                t0 = time.monotonic()
                await asyncio.gather(*(one() for _ in range(n)))
                elapsed = time.monotonic() - t0
                await close(client)
                got = server.hits[counter]
                print(
                    f"{backend:16} {fault:18} {got:9d} {got / n:6.3f} {reported:9d}  {got == reported}"
                    f"   ({elapsed:.1f} s)"
                )


# -- connections ----------------------------------------------------------------------------------------


async def connections(n: int) -> None:
    print(f"\n## connections: {n} calls over 4 origins, 48 at a time (limits 16 in all, 6 per origin)")
    print(f"{'backend':16} {'peak open':>9} {'peak/origin':>11} {'opened':>7}")
    total = ConnectionGauge()
    servers = [FaultServer(total_connections=total).start() for _ in range(4)]
    try:
        for backend in BACKENDS:
            for s in servers:
                s.connections.reset()
            total.reset()
            client = make(backend)
            sem = asyncio.Semaphore(48)

            async def one(i: int, client: Any = client, sem: Any = sem) -> None:
                async with sem:
                    await call(client, f"{servers[i % 4].url}/ok?delay=0.002")

            await asyncio.gather(*(one(i) for i in range(n)))
            await close(client)
            per = max(s.connections.peak for s in servers)
            print(f"{backend:16} {total.peak:9d} {per:11d} {total.opened:7d}")

        opened = []
        for _ in range(8):
            total.reset()
            with PerfClient() as sync, ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda j: sync.get(f"{servers[j % 4].url}/ok?delay=0.01"), range(40)))
            opened.append(total.opened)
        print(
            f"sync client, 40 requests over 4 hosts from 16 threads, 8 runs: connections opened "
            f"median {statistics.median(opened):g}, min {min(opened)}, max {max(opened)}"
        )
        opened, took = [], []
        for _ in range(5):
            total.reset()
            with PerfClient() as sync, ThreadPoolExecutor(16) as pool:
                t0 = time.perf_counter()
                list(pool.map(lambda j: sync.get(f"{servers[j % 4].url}/ok?delay=0.01"), range(800)))
                took.append(time.perf_counter() - t0)
            opened.append(total.opened)
        print(
            f"sync client, 800 requests (10 ms each) over 4 hosts from 16 threads, 5 runs: connections "
            f"opened median {statistics.median(opened):g}, wall median {statistics.median(took):.3f} s"
        )
    finally:
        for s in servers:
            s.stop()


# -- memory -----------------------------------------------------------------------------------------------


async def memory(rounds: int) -> None:
    print(f"\n## memory: {rounds} rounds of 10,000 calls queued, then cancelled (AsyncPerfClient)")
    tracemalloc.start()
    try:
        with FaultServer() as server:
            async with AsyncPerfClient() as client:
                url = server.url + "/slow-first-byte?delay=30"
                heap = []
                for r in range(rounds):
                    tasks = [asyncio.create_task(client.get(url)) for _ in range(10_000)]
                    await asyncio.sleep(0.1)
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    del tasks
                    gc.collect()
                    heap.append(tracemalloc.get_traced_memory()[0] / 2**20)
                    print(f"round {r}: python heap {heap[-1]:.2f} MB, rss {rss_mb():.1f} MB")
                print(f"heap growth from round 1 to {rounds - 1}: {(heap[-1] - heap[1]) * 1024:.0f} KB")
    finally:
        tracemalloc.stop()


# -- /metrics -------------------------------------------------------------------------------------------


def metrics_threads() -> None:
    from infra.server import serve_metrics

    print("\n## /metrics: threads while 200 connections sit half-open (100 silent, 100 mid-head)")
    before = threading.active_count()
    with serve_metrics(port=0) as srv:
        idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(200)]
        for s in idle[:100]:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
            t0 = time.monotonic()
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            ok = s.recv(12).startswith(b"HTTP/1.1 200")
            took = time.monotonic() - t0
        print(
            f"threads started by the endpoint: {threading.active_count() - before}; a scrape meanwhile: "
            f"{'200' if ok else 'failed'} in {took * 1000:.1f} ms"
        )
        for s in idle:
            with contextlib.suppress(OSError):
                s.close()


async def main(quick: bool) -> None:
    await amplification(500 if quick else 2000)
    await connections(400 if quick else 2000)
    await memory(3 if quick else 6)
    metrics_threads()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
