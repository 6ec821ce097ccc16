"""The HTTP layer's own cost per request: AsyncPerfClient over a fake backend that answers at once.

    python bench/bench_http_layer.py                   # 20,000 GETs sequential, 20,000 at c=50
    python bench/bench_http_layer.py --requests 50000 --repeat 5
    python bench/bench_http_layer.py --callgrind       # instructions per request instead (valgrind)

The client runs with every feature on (its defaults: 16 connections in all and 6 per host, retries, the
retry budget, the breaker, the deadline and phase timers, per-origin metrics) through its real ``_run``,
over an in-process fake backend (``install_backend``, a named seam) whose ``send()`` and ``read()`` return
a ready response object and body with no I/O. The same fake called bare (send, read, status: what the
layer calls on it) is timed next to it; the difference is the layer's own work per request.

Two loads: ``seq`` (one task, the fake never suspends, so the slots are always free) and ``c50`` (50
tasks, the fake's ``send()`` yields to the loop once, so 44 of them queue for the 6 host slots as on a
busy origin; the bare run yields the same). Figures are CPU microseconds per request (``thread_time``,
steadier than wall time on a shared box): the mean over each run, best of ``--repeat``; for ``seq`` also
the p50 of each request's own wall time (``perf_counter_ns``). The layer figure is ours - bare.

``--callgrind``: each client and load in a process of its own under ``valgrind --tool=callgrind``, twice
(``--warmup`` then ``--warmup + --requests`` calls); the difference of the instruction totals over
``--requests`` is instructions per request, start-up and imports taken out. Instruction counts barely
move with the machine's load, so this resolves a few per cent where the µs figures can't on a shared box.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import operator
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

URL = "http://fake.test:80/ok"
BODY = b"x" * 300


class _FakeResponse:
    __slots__ = ("headers", "status")

    def __init__(self) -> None:
        self.status = 200
        self.headers = {"content-type": "text/plain", "content-length": str(len(BODY))}


def _never_ours(exc: BaseException) -> str | None:
    return None


def _http11(resp: Any) -> str:
    return "HTTP/1.1"


class FakeBackend:
    """Answers every request at once with the same ready response; ``yields``: ``send()`` first lets the
    loop run once (so concurrent callers contend for the slots)."""

    classify = staticmethod(_never_ours)
    closes_itself = True
    status = operator.attrgetter("status")
    version = staticmethod(_http11)

    def __init__(self, yields: bool) -> None:
        self.response = _FakeResponse()
        self.yields = yields
        self.sent = 0

    async def send(
        self,
        kind: str,
        method: str,
        url: str,
        params: Any,
        headers: Any,
        content: Any,
        json: Any,
        until: float | None = None,
    ) -> Any:
        self.sent += 1
        if self.yields:
            await asyncio.sleep(0)
        return self.response

    @staticmethod
    async def read(resp: Any) -> bytes:
        return BODY

    @staticmethod
    async def drop(resp: Any) -> None:
        return None

    @staticmethod
    def body(*args: Any) -> Any:
        raise NotImplementedError("the layer bench does not stream")


async def _bare_get(backend: FakeBackend) -> int:
    resp = await backend.send("aiohttp", "GET", URL, None, None, None, None)
    await backend.read(resp)
    return backend.status(resp)  # type: ignore[no-any-return]


async def _drive(get: Any, total: int, concurrency: int, lat: list[int] | None) -> float:
    """CPU µs per request of ``total`` calls of ``get()`` over ``concurrency`` tasks."""
    remaining = total
    clock = time.perf_counter_ns

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            if lat is None:
                status = await get()
            else:
                t0 = clock()
                status = await get()
                lat.append(clock() - t0)
            if status != 200:
                raise RuntimeError(f"status {status}")

    gc.collect()
    start = time.thread_time_ns()
    if concurrency == 1:
        await worker()
    else:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.thread_time_ns() - start) / total / 1000


async def _measure(client_kind: str, load: str, total: int) -> tuple[float, float | None]:
    """(mean CPU µs per request, p50 wall µs per request or None) for one client over one load."""
    from infra.http import AsyncPerfClient
    from infra.http._async_client import install_backend

    concurrency = 50 if load == "c50" else 1
    backend = FakeBackend(yields=concurrency > 1)
    lat: list[int] | None = [] if concurrency == 1 else None
    if client_kind == "bare":

        async def get() -> int:
            return await _bare_get(backend)

        await _drive(get, min(total, 2000), concurrency, None)  # warm-up
        mean = await _drive(get, total, concurrency, lat)
    else:
        async with AsyncPerfClient() as client:
            install_backend(client, backend)

            async def get() -> int:
                return (await client.get(URL)).status

            await _drive(get, min(total, 2000), concurrency, None)
            mean = await _drive(get, total, concurrency, lat)
            if client.pool_stats()["in_use"] != 0:
                raise RuntimeError("a slot leaked")
    p50 = statistics.median(lat) / 1000 if lat else None
    return mean, p50


async def _child(client_kind: str, load: str, total: int) -> None:
    """``total`` calls, untimed (what callgrind counts)."""
    from infra.http import AsyncPerfClient
    from infra.http._async_client import install_backend

    concurrency = 50 if load == "c50" else 1
    backend = FakeBackend(yields=concurrency > 1)
    if client_kind == "bare":

        async def get() -> int:
            return await _bare_get(backend)

        await _drive(get, total, concurrency, None)
        return
    async with AsyncPerfClient() as client:
        install_backend(client, backend)

        async def get() -> int:
            return (await client.get(URL)).status

        await _drive(get, total, concurrency, None)


def _instructions(kind: str, load: str, total: int, workdir: str) -> int:
    from callgrind_http import callgrind_instructions

    out = os.path.join(workdir, f"callgrind.{kind}.{load}.{total}")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, "--loads", load]
    cmd += ["--requests", str(total)]
    return callgrind_instructions(cmd, out, dict(os.environ, PYTHONHASHSEED="0"))


def _callgrind(loads: list[str], requests: int, warmup: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        for load in loads:
            per: dict[str, float] = {}
            for kind in ("bare", "ours"):
                base = _instructions(kind, load, warmup, workdir)
                full = _instructions(kind, load, warmup + requests, workdir)
                per[kind] = (full - base) / requests
                print(f"{load:4} {kind:5} {per[kind] / 1000:7.2f}k instructions/request", flush=True)
            layer = (per["ours"] - per["bare"]) / 1000
            print(f"{load:4} layer {layer:7.2f}k instructions/request (ours - bare)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20000, help="GETs per run (default 20000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, best kept (default 3)")
    parser.add_argument("--loads", default="seq,c50", help="seq,c50 (default both)")
    parser.add_argument("--callgrind", action="store_true", help="instructions per request (valgrind)")
    parser.add_argument("--warmup", type=int, default=1000, help="--callgrind: calls in the baseline run")
    parser.add_argument("--child", choices=("bare", "ours"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    loads = [x for x in args.loads.split(",") if x]
    if args.child:
        asyncio.run(_child(args.child, loads[0], args.requests))
        return
    if args.callgrind:
        _callgrind(loads, args.requests, args.warmup)
        return
    for load in loads:
        best: dict[str, tuple[float, float | None]] = {}
        for _ in range(args.repeat):
            for kind in ("bare", "ours"):  # alternated, so a burst of load hits both
                mean, p50 = asyncio.run(_measure(kind, load, args.requests))
                if kind not in best or mean < best[kind][0]:
                    best[kind] = (mean, p50)
        for kind in ("bare", "ours"):
            mean, p50 = best[kind]
            extra = f", p50 {p50:6.2f} µs wall" if p50 is not None else ""
            print(f"{load:4} {kind:5} {mean:6.2f} µs CPU/request (mean, best of {args.repeat}){extra}")
        (ours, ours_p50), (bare, bare_p50) = best["ours"], best["bare"]
        p50_note = f", p50 {ours_p50 - bare_p50:.2f} µs" if ours_p50 is not None and bare_p50 else ""
        print(f"{load:4} layer {ours - bare:6.2f} µs/request (ours - bare, mean{p50_note})", flush=True)


if __name__ == "__main__":
    main()
