"""Instructions per request of the async HTTP client, ours against aiohttp's own ClientSession, by callgrind.

    python bench/callgrind_http.py                    # 1,000 GETs at c=50, ours and aiohttp (16/6)
    python bench/callgrind_http.py --requests 2000 --repeat 2
    python bench/callgrind_http.py --clients ours-pyreqwest,pyreqwest,pyreqwest-s0

The loopback aiohttp server (``python -m infra.testing.fault_server``, route ``/ok``) runs in its own
process, outside valgrind. Each client runs in a process of its own under ``valgrind --tool=callgrind``
twice: ``--warmup`` GETs, then ``--warmup + --requests`` GETs, both at ``--concurrency`` workers. The
difference of the two runs' instruction totals divided by ``--requests`` is the client's instructions per
request with the interpreter's start, the imports, the session's set-up and the first connections taken
out. Ours runs with its defaults (retries, retry budget, breaker and metrics on; 16 connections in all,
6 per host); aiohttp with the same limits (``TCPConnector(limit=16, limit_per_host=6)``), reading each
body like ours does. Instruction counts barely move with the machine's load, so unlike a req/s ratio this
one resolves a few per cent on a shared box. Prints both figures and the ratio ours / aiohttp.

``--clients`` adds the native side: ``ours-pyreqwest`` (ours on ``http.backend: "pyreqwest"``),
``pyreqwest`` (raw, one await for headers and body: ``build().send()``, behind the same 16 / 6 caps) and
``pyreqwest-s0`` (raw, streamed as our backend sends: headers first, then the body). callgrind runs a
process's threads one at a time and counts them all, so these figures include reqwest's runtime threads:
the CPU a request costs the machine, not the event loop's share of it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from typing import Any

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

CLIENTS = ("ours", "aiohttp", "ours-pyreqwest", "pyreqwest", "pyreqwest-s0")


async def _load(get: Any, url: str, total: int, concurrency: int) -> None:
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            status = await get(url)
            if status != 200:
                raise RuntimeError(f"GET {url}: status {status}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _child(client: str, url: str, total: int, concurrency: int) -> None:
    if client in ("ours", "ours-pyreqwest"):
        from infra.http import AsyncPerfClient

        backend = "pyreqwest" if client == "ours-pyreqwest" else "aiohttp"
        async with AsyncPerfClient(backend=backend) as ours:

            async def get(u: str) -> int:
                return (await ours.get(u)).status

            await _load(get, url, total, concurrency)
    elif client == "pyreqwest-s0":
        from pyreqwest.client import ClientBuilder

        total_cap, per_host = asyncio.Semaphore(16), asyncio.Semaphore(6)
        async with ClientBuilder().build() as rq:

            async def get(u: str) -> int:
                async with per_host, total_cap:
                    req = rq.get(u).streamed_read_buffer_limit(0).build_streamed()
                    r = await req.__aenter__()
                    await r.bytes()
                    return int(r.status)

            await _load(get, url, total, concurrency)
    elif client == "pyreqwest":
        # pyreqwest at its defaults behind the same 16 / 6 caps (asyncio semaphores): its fastest use,
        # one await for headers and body (``build().send()``)
        from pyreqwest.client import ClientBuilder

        total_cap, per_host = asyncio.Semaphore(16), asyncio.Semaphore(6)
        async with ClientBuilder().build() as rq:

            async def get(u: str) -> int:
                async with per_host, total_cap:
                    r = await rq.get(u).build().send()
                    await r.bytes()
                    return int(r.status)

            await _load(get, url, total, concurrency)
    else:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=16, limit_per_host=6)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def get(u: str) -> int:
                async with session.get(u) as r:
                    await r.read()
                    return r.status

            await _load(get, url, total, concurrency)


def _start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.testing.fault_server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"fault server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/ok"


def callgrind_instructions(argv: list[str], out: str, env: dict[str, str]) -> int:
    """Instructions ``argv`` runs under callgrind (its totals line; output to ``out``). Shared with
    bench_http_layer.py."""
    grind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    subprocess.run(grind + argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        for line in f:
            found = re.match(r"(?:summary|totals):\s+(\d+)", line)
            if found:
                return int(found.group(1))
    raise RuntimeError(f"no totals in {out}")


def _instructions(client: str, url: str, total: int, concurrency: int, workdir: str) -> int:
    """Total instructions of one client process (``total`` GETs) under callgrind."""
    out = os.path.join(workdir, f"callgrind.{client}.{total}")
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=ROOT)
    argv = [sys.executable, os.path.abspath(__file__), "--child", client, "--url", url]
    argv += ["--requests", str(total), "--concurrency", str(concurrency)]
    return callgrind_instructions(argv, out, env)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000, help="GETs counted (default 1000)")
    parser.add_argument("--warmup", type=int, default=200, help="GETs in the baseline run (default 200)")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=1, help="measure each client this many times")
    parser.add_argument(
        "--clients",
        default="ours,aiohttp",
        help="of ours, aiohttp, ours-pyreqwest, pyreqwest (default ours,aiohttp)",
    )
    parser.add_argument("--child", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(args.child, args.url, args.requests, args.concurrency))
        return
    clients = [c for c in args.clients.split(",") if c]
    proc, url = _start_server()
    per: dict[str, list[float]] = {c: [] for c in clients}
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for _ in range(args.repeat):
                for client in clients:
                    base = _instructions(client, url, args.warmup, args.concurrency, workdir)
                    full = _instructions(client, url, args.warmup + args.requests, args.concurrency, workdir)
                    per[client].append((full - base) / args.requests)
                    print(f"{client:14} {per[client][-1] / 1000:8.1f}k instructions/request", flush=True)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
    if "ours" in per and "aiohttp" in per:
        ours = min(per["ours"])
        peer = min(per["aiohttp"])
        print(
            f"ours {ours / 1000:.1f}k, aiohttp {peer / 1000:.1f}k instructions/request "
            f"({args.requests} GETs at c={args.concurrency}, best of {args.repeat}): "
            f"ratio {ours / peer:.3f}x"
        )


if __name__ == "__main__":
    main()
