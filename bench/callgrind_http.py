"""Instructions per request of the async HTTP client, ours against aiohttp's own ClientSession, by callgrind.

    python bench/callgrind_http.py                    # 1,000 GETs at c=50, ours and aiohttp (16/6)
    python bench/callgrind_http.py --requests 2000 --repeat 2
    python bench/callgrind_http.py --clients ours-pyreqwest,pyreqwest,pyreqwest-s0
    python bench/callgrind_http.py --h2 --main-thread --clients pyreqwest,pyreqwest-s0,ours-backend-only,ours

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
the CPU a request costs the machine, not the event loop's share of it; ``--main-thread`` counts the event
loop's thread alone (callgrind's ``--separate-threads``), the one a Python client cannot spread. ``--h2``
runs them over HTTP/2 (h2c, prior knowledge) against nginx, ours with the server in ``http2_hosts``;
``ours-backend-only`` is our pyreqwest backend's send and read with none of the layer around them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

CLIENTS = ("ours", "aiohttp", "ours-pyreqwest", "ours-backend-only", "pyreqwest", "pyreqwest-s0")


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


async def _child(client: str, url: str, total: int, concurrency: int, h2: bool) -> None:
    """One client's load. ``h2``: the server speaks h2c (prior knowledge); ours lists it in
    ``http2_hosts`` (``http2_backend: "auto"``: pyreqwest carries it), the raw pyreqwest clients use
    ``http2_prior_knowledge()``."""
    get: Any
    if client in ("ours", "ours-pyreqwest"):
        from infra.http import AsyncPerfClient

        backend = "pyreqwest" if client == "ours-pyreqwest" else "aiohttp"
        hosts = (url.split("/")[2],) if h2 else ()
        async with AsyncPerfClient(backend=backend, http2_hosts=hosts) as ours:

            async def get(u: str) -> int:
                return (await ours.get(u)).status

            await _load(get, url, total, concurrency)
    elif client == "ours-backend-only":
        # our pyreqwest backend's send + read with none of the layer around it (no slots, timers,
        # retries, breaker or metrics): what the backend glue costs on its own
        from infra.http._reqwest import PyreqwestBackend, make_client

        kind = "rq-h2c" if h2 else "rq-h1"
        rq = make_client(kind, max_connections=16, max_per_host=6, keepalive=15.0, connect=None, verify=True)
        backend_ = PyreqwestBackend({kind: rq}, None)

        async def get(u: str) -> int:
            # until: a call's deadline, 60 s on (reqwest's own total timeout rides on each request)
            sent = await backend_.send(kind, "GET", u, None, None, None, None, time.monotonic() + 60)
            await backend_.read(sent)
            return sent.status

        await _load(get, url, total, concurrency)
    elif client in ("pyreqwest", "pyreqwest-s0"):
        # pyreqwest at its defaults (over HTTP/1.1 behind the same 16 / 6 caps, asyncio semaphores; over
        # HTTP/2 uncapped, one connection).
        # "pyreqwest": its fastest use, one await for headers and body (``build().send()``);
        # "pyreqwest-s0": streamed as our backend sends, headers first, then the body
        from pyreqwest.client import ClientBuilder

        builder = ClientBuilder()
        if h2:
            builder = builder.http2_prior_knowledge()
        total_cap, per_host = asyncio.Semaphore(16), asyncio.Semaphore(6)
        async with builder.build() as rq:
            if client == "pyreqwest":

                async def send(u: str) -> int:
                    r = await rq.get(u).build().send()
                    await r.bytes()
                    return int(r.status)

            else:

                async def send(u: str) -> int:
                    req = rq.get(u).streamed_read_buffer_limit(0).build_streamed()
                    r = await req.__aenter__()
                    (await r.bytes()).to_bytes()
                    return int(r.status)

            async def capped(u: str) -> int:
                async with per_host, total_cap:
                    return await send(u)

            get = send if h2 else capped  # over HTTP/2 at its defaults, as bench_http's HTTP/2 peer
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


def callgrind_instructions(argv: list[str], out: str, env: dict[str, str], main_thread: bool = False) -> int:
    """Instructions ``argv`` runs under callgrind (its totals line; output to ``out``). Shared with
    bench_http_layer.py. ``main_thread``: the first thread's alone (the event loop's; callgrind writes a
    file a thread, ``out-01`` the first)."""
    grind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    if main_thread:
        grind.append("--separate-threads=yes")
    subprocess.run(grind + argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out + "-01" if main_thread else out) as f:
        for line in f:
            found = re.match(r"(?:summary|totals):\s+(\d+)", line)
            if found:
                return int(found.group(1))
    raise RuntimeError(f"no totals in {out}")


def _instructions(client: str, url: str, total: int, args: argparse.Namespace, workdir: str) -> int:
    """Instructions of one client process (``total`` GETs) under callgrind."""
    out = os.path.join(workdir, f"callgrind.{client}.{total}")
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=ROOT)
    argv = [sys.executable, os.path.abspath(__file__), "--child", client, "--url", url]
    argv += ["--requests", str(total), "--concurrency", str(args.concurrency)] + (["--h2"] if args.h2 else [])
    return callgrind_instructions(argv, out, env, args.main_thread)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000, help="GETs counted (default 1000)")
    parser.add_argument("--warmup", type=int, default=200, help="GETs in the baseline run (default 200)")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=1, help="measure each client this many times")
    parser.add_argument(
        "--clients", default="ours,aiohttp", help=f"of {', '.join(CLIENTS)} (default ours,aiohttp)"
    )
    parser.add_argument("--h2", action="store_true", help="HTTP/2 (h2c) against nginx (needs nginx)")
    parser.add_argument("--main-thread", action="store_true", help="the event loop's thread alone")
    parser.add_argument("--child", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(args.child, args.url, args.requests, args.concurrency, args.h2))
        return
    clients = [c for c in args.clients.split(",") if c]
    unknown = sorted(set(clients) - set(CLIENTS))
    if unknown:
        parser.error(f"--clients: unknown {', '.join(unknown)} (choose from {', '.join(CLIENTS)})")
    per: dict[str, list[float]] = {c: [] for c in clients}
    with contextlib.ExitStack() as stack:
        if args.h2:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from http_peers import nginx_path, nginx_server

            if nginx_path() is None:
                parser.error("--h2 needs nginx (apt-get install nginx-light)")
            srv = stack.enter_context(nginx_server())
            url = f"{srv.h2}/ok"
        else:
            proc, url = _start_server()
            stack.callback(_stop, proc)
        with tempfile.TemporaryDirectory() as workdir:
            for _ in range(args.repeat):
                for client in clients:
                    base = _instructions(client, url, args.warmup, args, workdir)
                    full = _instructions(client, url, args.warmup + args.requests, args, workdir)
                    per[client].append((full - base) / args.requests)
                    print(f"{client:18} {per[client][-1] / 1000:8.1f}k instructions/request", flush=True)
    what = "the event loop's thread" if args.main_thread else "every thread"
    proto = "HTTP/2 h2c, nginx" if args.h2 else "HTTP/1.1, the aiohttp fault server"
    print(f"({proto}; {args.requests} GETs at c={args.concurrency}; {what}; best of {args.repeat})")
    for peer in ("aiohttp", "pyreqwest"):
        for ours in ("ours", "ours-pyreqwest"):
            if ours in per and peer in per:
                a, b = min(per[ours]), min(per[peer])
                print(f"{ours} / {peer}: {a / 1000:.1f}k / {b / 1000:.1f}k = {a / b:.3f}x")


def _stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)


if __name__ == "__main__":
    main()
