"""The clients a user could pick instead of ours, for ``bench_http.py --peers``.

Each peer runs twice where it has limits to set: at our limits (16 connections in all, 6 per host, as
``HttpConfig`` defaults) and at its own defaults. Where a peer has no per-host limit its name says what
it ran with. A peer whose package is not installed (``pip install -e '.[bench]'``) is skipped with the
reason printed, so the script runs anywhere.

Servers run in their own process: ``infra.testing.fault_server`` (aiohttp, HTTP/1.1) and
``bench/h2c_server.py`` (hypercorn, h2c with prior knowledge and HTTP/1.1 on the same port).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from typing import Any

LIMIT, PER_HOST = 16, 6  # HttpConfig's defaults: the limits ours runs with


class Contender:
    """One client: ``open``, ``fetch(url) -> status`` (body read in full), ``close``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rates: list[float] = []
        self.latencies: list[float] = []

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def fetch(self, url: str) -> int:
        raise NotImplementedError


def missing(module: str) -> str | None:
    """None when ``module`` imports, else the reason it doesn't (printed as the skip reason)."""
    try:
        importlib.import_module(module)
        return None
    except Exception as exc:  # ImportError, or a native wheel that fails to load here
        return f"{type(exc).__name__}: {exc}"


class Pyreqwest(Contender):
    """pyreqwest (Rust reqwest/hyper). Limits: ``max_connections`` caps requests in flight (it has no
    per-host cap); ``pool_max_idle_per_host`` caps idle connections kept per host."""

    def __init__(self, name: str, limited: bool, http2: bool = False) -> None:
        super().__init__(name)
        self.limited, self.http2 = limited, http2

    async def open(self) -> None:
        from pyreqwest.client import ClientBuilder

        b = ClientBuilder()
        if self.limited:
            b = b.max_connections(LIMIT).pool_max_idle_per_host(PER_HOST)
        if self.http2:
            b = b.http2_prior_knowledge()
        self.c = await b.build().__aenter__()

    async def close(self) -> None:
        await self.c.__aexit__(None, None, None)

    async def fetch(self, url: str) -> int:
        r = await self.c.get(url).build().send()
        await r.bytes()
        return int(r.status)


class Rnet(Contender):
    """rnet (Rust, hyper fork). Limits: ``pool_max_size`` (total), ``pool_max_idle_per_host``."""

    def __init__(self, name: str, limited: bool, http2: bool = False) -> None:
        super().__init__(name)
        self.limited, self.http2 = limited, http2

    async def open(self) -> None:
        import rnet

        kw: dict[str, Any] = {}
        if self.limited:
            kw = {"pool_max_size": LIMIT, "pool_max_idle_per_host": PER_HOST}
        if self.http2:
            kw["http2_only"] = True
        self.c = rnet.Client(**kw)

    async def fetch(self, url: str) -> int:
        r = await self.c.get(url)
        await r.bytes()
        status = int(r.status.as_int()) if hasattr(r.status, "as_int") else int(str(r.status)[:3])
        await r.close()
        return status


class CurlCffi(Contender):
    """curl_cffi (libcurl multi). Limits: ``max_clients`` (total handles; default 10), no per-host cap."""

    def __init__(self, name: str, limited: bool) -> None:
        super().__init__(name)
        self.limited = limited

    async def open(self) -> None:
        from curl_cffi.requests import AsyncSession

        self.s: Any = AsyncSession(max_clients=LIMIT) if self.limited else AsyncSession()

    async def close(self) -> None:
        await self.s.close()

    async def fetch(self, url: str) -> int:
        r = await self.s.get(url)
        return int(r.status_code)


class Niquests(Contender):
    """niquests (urllib3-future). Limits: ``pool_connections`` hosts kept, ``pool_maxsize`` per host."""

    def __init__(self, name: str, limited: bool) -> None:
        super().__init__(name)
        self.limited = limited

    async def open(self) -> None:
        import niquests

        kw: dict[str, Any] = {"pool_connections": LIMIT, "pool_maxsize": PER_HOST} if self.limited else {}
        self.s = niquests.AsyncSession(**kw)

    async def close(self) -> None:
        await self.s.close()

    async def fetch(self, url: str) -> int:
        r = await self.s.get(url)
        return int(r.status_code or 0)


class Aiohttp(Contender):
    def __init__(self, name: str, limited: bool) -> None:
        super().__init__(name)
        self.limited = limited

    async def open(self) -> None:
        import aiohttp

        kw: dict[str, Any] = {"limit": LIMIT, "limit_per_host": PER_HOST} if self.limited else {}
        self.s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(**kw))

    async def close(self) -> None:
        await self.s.close()

    async def fetch(self, url: str) -> int:
        async with self.s.get(url) as r:
            await r.read()
            return r.status


class Httpx(Contender):
    """httpx; ``http2=True`` speaks h2c with prior knowledge when the URL is http:// (httpx needs
    ``http1=False`` for that)."""

    def __init__(self, name: str, http2: bool = False) -> None:
        super().__init__(name)
        self.http2 = http2

    async def open(self) -> None:
        import httpx

        kw: dict[str, Any] = {"http1": False, "http2": True} if self.http2 else {}
        self.c = httpx.AsyncClient(**kw)

    async def close(self) -> None:
        await self.c.aclose()

    async def fetch(self, url: str) -> int:
        r = await self.c.get(url)
        return int(r.status_code)


class Ours(Contender):
    """AsyncPerfClient with every feature on (its defaults: limits 16/6, retries, budget, breaker,
    deadline, metrics); ``http2_host`` lists the server's host:port in ``http2_hosts``; ``backend``
    "pyreqwest" runs it on the native backend (HTTP/2 hosts included)."""

    def __init__(
        self,
        name: str,
        http2_host: str | None = None,
        limits: tuple[int, int] | None = None,
        backend: str = "aiohttp",
    ) -> None:
        super().__init__(name)
        self.http2_host, self.limits, self.backend = http2_host, limits, backend

    async def open(self) -> None:
        from infra.http import AsyncPerfClient

        kw: dict[str, Any] = {"http2_hosts": (self.http2_host,)} if self.http2_host else {}
        kw["backend"] = self.backend
        if self.limits:
            kw.update(max_connections=self.limits[0], max_per_host=self.limits[1])
        self.c = AsyncPerfClient(**kw)

    async def close(self) -> None:
        await self.c.aclose()

    async def fetch(self, url: str) -> int:
        return int((await self.c.get(url)).status)


def h1_peers() -> tuple[list[Contender], list[str]]:
    """The HTTP/1.1 field: (contenders whose packages import, skip lines for the rest)."""
    out: list[Contender] = []
    skipped: list[str] = []
    table: list[tuple[str, list[Contender]]] = [
        (
            "pyreqwest",
            [
                Pyreqwest("pyreqwest (16 in flight, 6 idle/host)", True),
                Pyreqwest("pyreqwest (defaults)", False),
            ],
        ),
        ("rnet", [Rnet("rnet (16 total, 6 idle/host)", True), Rnet("rnet (defaults)", False)]),
        (
            "curl_cffi",
            [CurlCffi("curl_cffi (16 handles)", True), CurlCffi("curl_cffi (defaults: 10)", False)],
        ),
        ("niquests", [Niquests("niquests (16 hosts x 6)", True), Niquests("niquests (defaults)", False)]),
        ("aiohttp", [Aiohttp("aiohttp (16/6)", True), Aiohttp("aiohttp (defaults: 100)", False)]),
        ("httpx", [Httpx("httpx (defaults: 100)")]),
        # Ours at aiohttp's default limits: how much of a gap to a peer at its defaults is the limits.
        ("aiohttp", [Ours("ours, all features, limits 100/100", limits=(100, 100))]),
        (
            "pyreqwest",
            [Ours("ours, pyreqwest backend, limits 100/100", limits=(100, 100), backend="pyreqwest")],
        ),
    ]
    for module, contenders in table:
        why = missing(module)
        if why is None:
            out.extend(contenders)
        else:
            skipped.append(f"skipped {module}: {why}")
    return out, skipped


def h2_peers(hostport: str) -> tuple[list[Contender], list[str]]:
    """The HTTP/2 field (h2c, prior knowledge), each at its own defaults: one connection per origin."""
    out: list[Contender] = [Httpx("httpx (http2=True)", http2=True)]
    skipped: list[str] = []
    for module, c in (
        ("pyreqwest", Pyreqwest("pyreqwest (HTTP/2)", False, http2=True)),
        ("rnet", Rnet("rnet (HTTP/2)", False, http2=True)),
    ):
        why = missing(module)
        if why is None:
            out.append(c)
        else:
            skipped.append(f"skipped {module}: {why}")
    if missing("pyreqwest") is None:
        out.append(
            Ours("ours, pyreqwest backend (host in http2_hosts)", http2_host=hostport, backend="pyreqwest")
        )
    out.append(Ours("ours (host in http2_hosts)", http2_host=hostport))
    return out, skipped


def start_h2c_server() -> tuple[subprocess.Popen[str], str]:
    """hypercorn in its own process (``bench/h2c_server.py``); returns (process, base URL)."""
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.Popen(
        [sys.executable, os.path.join(here, "h2c_server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.join(here, ".."),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"h2c server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}"


async def cpu_per_request(rounds: int = 3, n: int = 3000, conc: int = 50) -> None:
    """Client CPU a request (``time.process_time``: every thread of this process, the native clients'
    runtime threads included; the server runs in its own process) for the front runners and ours on
    both backends, at our limits (16/6) and at 100/100. Steadier than req/s on a shared box: a neighbour's
    load moves the wall clock far more than the CPU a request takes."""
    import statistics
    import time

    from bench_http import run_load, start_server

    field: list[Contender] = [Aiohttp("aiohttp (16/6)", True), Aiohttp("aiohttp (defaults: 100)", False)]
    field.append(Ours("ours, aiohttp backend (16/6)"))
    field.append(Ours("ours, aiohttp backend, limits 100/100", limits=(100, 100)))
    if missing("pyreqwest") is None:
        field += [
            Pyreqwest("pyreqwest (16 in flight, 6 idle/host)", True),
            Pyreqwest("pyreqwest (defaults)", False),
            Ours("ours, pyreqwest backend (16/6)", backend="pyreqwest"),
            Ours("ours, pyreqwest backend, limits 100/100", limits=(100, 100), backend="pyreqwest"),
        ]
    proc, base = start_server()
    try:
        for c in field:
            await c.open()
            await run_load(c.fetch, base + "/ok", 500, conc)
        cpu: dict[str, list[float]] = {c.name: [] for c in field}
        for r in range(rounds):
            for c in field[r % len(field) :] + field[: r % len(field)]:
                t = time.process_time()
                await run_load(c.fetch, base + "/ok", n, conc)
                cpu[c.name].append((time.process_time() - t) / n * 1e6)
        for c in field:
            await c.close()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
    print(f"\nclient CPU a request, c={conc}, {n} GETs x {rounds} rounds (median; the rounds)\n")
    print("| client | µs CPU a request | rounds |")
    print("|---|---:|---|")
    for name, values in sorted(cpu.items(), key=lambda kv: statistics.median(kv[1])):
        print(f"| {name} | {statistics.median(values):.0f} | {' / '.join(f'{v:.0f}' for v in values)} |")
