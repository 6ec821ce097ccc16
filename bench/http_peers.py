"""The clients a user could pick instead of ours, for ``bench_http.py --peers``.

Each peer runs twice where it has limits to set: at our limits (16 connections in all, 6 per host, as
``HttpConfig`` defaults) and at its own defaults. Where a peer has no per-host limit its name says what
it ran with. A peer whose package is not installed (``pip install -e '.[bench]'``) is skipped with the
reason printed, so the script runs anywhere.

Servers run in their own process: ``infra.testing.fault_server`` (aiohttp, HTTP/1.1),
``bench/h2c_server.py`` (hypercorn, h2c with prior knowledge and HTTP/1.1 on the same port) and nginx
(``nginx_server``: one worker, an HTTP/1.1 listener and an h2c prior-knowledge listener). The Python
servers saturate a core on the small boxes these run on (hypercorn at ~3.4k req/s over h2), so the server,
not the client, can set the figures; nginx serves ``/ok`` for a fraction of that CPU. Each server reports
its own CPU (``Server.cpu``: utime+stime from /proc of its process, nginx's worker), printed as % of one
core beside each row: a row whose server sat at ~90 % or more measured the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

LIMIT, PER_HOST = 16, 6  # HttpConfig's defaults: the limits ours runs with


class Contender:
    """One client: ``open``, ``fetch(url) -> status`` (body read in full), ``close``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rates: list[float] = []
        self.latencies: list[float] = []
        # The URL this client fetches instead of the field's (None: the field's): the HTTP/1.1 rows of
        # the nginx HTTP/2 section go to nginx's HTTP/1.1 listener, its h2c one speaks only h2.
        self.url: str | None = None

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


class PyreqwestCapped(Pyreqwest):
    """pyreqwest at its defaults behind asyncio semaphores: 6 requests in flight per host and 16 in all,
    the caps ours applies over HTTP/1.1 (``max_per_host`` / ``max_connections``), which pyreqwest has no
    setting for (its ``max_connections`` counts requests in flight across hosts). The same limits as ours,
    so its row against ours is the layer's cost, not the limits'."""

    def __init__(self, name: str) -> None:
        super().__init__(name, limited=False)

    async def open(self) -> None:
        await super().open()
        self.total = asyncio.Semaphore(LIMIT)
        self.hosts: dict[str, asyncio.Semaphore] = {}

    async def fetch(self, url: str) -> int:
        host = url.split("/", 3)[2]
        sem = self.hosts.get(host)
        if sem is None:
            sem = self.hosts[host] = asyncio.Semaphore(PER_HOST)
        async with sem, self.total:
            return await super().fetch(url)


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


def http_settings(**wanted: Any) -> tuple[dict[str, Any], list[str]]:
    """``wanted`` split by whether ``HttpConfig`` has the field here: (the keywords it takes, a line for
    each it doesn't), so the bench can pass a setting newer than the client it runs against."""
    from infra.config import HttpConfig

    have = {f.name for f in dataclasses.fields(HttpConfig)}
    kept = {k: v for k, v in wanted.items() if k in have}
    return kept, [
        f"HttpConfig has no {k}: not passed (asked {v!r})" for k, v in wanted.items() if k not in have
    ]


def http_default(name: str) -> Any:
    """``HttpConfig``'s default for field ``name``, or None where it has no such field."""
    from infra.config import HttpConfig

    for f in dataclasses.fields(HttpConfig):
        if f.name == name:
            return f.default
    return None


class Ours(Contender):
    """AsyncPerfClient with every feature on (its defaults: limits 16/6, retries, budget, breaker,
    deadline, metrics); ``http2_host`` lists the server's host:port in ``http2_hosts``; ``backend``
    "pyreqwest" runs it on the native backend (HTTP/2 hosts included); ``settings``: more HttpConfig
    keywords (pass them through ``http_settings`` where the field may not exist yet)."""

    def __init__(
        self,
        name: str,
        http2_host: str | None = None,
        limits: tuple[int, int] | None = None,
        backend: str = "aiohttp",
        settings: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(name)
        self.http2_host, self.limits, self.backend = http2_host, limits, backend
        self.settings = dict(settings or {})

    async def open(self) -> None:
        from infra.http import AsyncPerfClient

        kw: dict[str, Any] = {"http2_hosts": (self.http2_host,)} if self.http2_host else {}
        kw["backend"] = self.backend
        if self.limits:
            kw.update(max_connections=self.limits[0], max_per_host=self.limits[1])
        kw.update(self.settings)
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
                PyreqwestCapped("pyreqwest (6 in flight per host)"),
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


def h2_peers(hostport: str, settings: dict[str, Any] | None = None) -> tuple[list[Contender], list[str]]:
    """The HTTP/2 field (h2c, prior knowledge), each at its own defaults: one connection per origin;
    ``settings``: more HttpConfig keywords for ours (``http_settings``)."""
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
    # ours at its defaults (http2_backend "auto": pyreqwest carries HTTP/2 where it is installed), then
    # the pure-Python path (httpx + h2) a machine without the native extra gets
    pure = dict(settings or {}, **http_settings(http2_backend="httpx")[0])
    if missing("pyreqwest") is None:
        out.append(Ours("ours (host in http2_hosts; defaults)", http2_host=hostport, settings=settings))
    out.append(Ours("ours, http2_backend httpx (pure Python)", http2_host=hostport, settings=pure))
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


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu(pid: int) -> float:
    """Seconds of CPU process ``pid`` has used, every thread (utime + stime of /proc/PID/stat; the
    kernel's tick, 10 ms at the usual 100 Hz, is the resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": rest[0] is field 3, state
    return (int(rest[11]) + int(rest[12])) / _TICK


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (nginx's workers under its master)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):  # gone meanwhile
                pass
    return out


@dataclasses.dataclass
class Server:
    """A server in its own process: ``h1`` the base URL speaking HTTP/1.1, ``h2`` the one speaking h2c
    with prior knowledge (None: it doesn't; hypercorn's is ``h1``: one port, told apart by the preface);
    ``pids`` the processes that serve (nginx: its worker, not the master), whose CPU ``cpu`` sums."""

    name: str
    h1: str
    h2: str | None
    pids: list[int]

    def cpu(self) -> float:
        return sum(proc_cpu(pid) for pid in self.pids)


def _stop_python(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()  # the fault server and h2c_server.py exit when stdin closes
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def aiohttp_server() -> Iterator[Server]:
    """``infra.testing.fault_server`` (aiohttp, HTTP/1.1), in its own process."""
    from bench_http import start_server

    proc, base = start_server()
    try:
        yield Server("aiohttp fault server", base, None, [proc.pid])
    finally:
        _stop_python(proc)


@contextlib.contextmanager
def hypercorn_server() -> Iterator[Server]:
    """``bench/h2c_server.py`` (hypercorn: h2c prior knowledge and HTTP/1.1 on one port), own process."""
    proc, base = start_h2c_server()
    try:
        yield Server("hypercorn", base, base, [proc.pid])
    finally:
        _stop_python(proc)


def nginx_path() -> str | None:
    """The nginx binary (PATH, then /usr/sbin where PATH lacks the sbin dirs), or None."""
    return shutil.which("nginx") or shutil.which(
        "nginx", path="/usr/sbin:/usr/local/sbin:/usr/local/nginx/sbin"
    )


# nginx's default; above the streams an HTTP/2 client opens on one connection by default (ours:
# HttpConfig.http2_max_streams where it has it, 100; hyper/pyreqwest and httpx take the server's
# SETTINGS), so the server's cap binds nobody at c=50 and at c=500 it is what a stock nginx gives.
NGINX_STREAMS = 128

_NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
{user}
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type text/plain;
    # one connection serves the whole run, HTTP/1.1 and HTTP/2 alike (since nginx 1.19.7 this is the
    # HTTP/2 request limit too: http2_max_requests is obsolete); no idle close within a run
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    http2_max_concurrent_streams {streams};
    server {{
        listen 127.0.0.1:{h1} backlog=4096;
        location /ok {{ return 200 "ok"; }}
    }}
    server {{
        listen 127.0.0.1:{h2} http2 backlog=4096;
        location /ok {{ return 200 "ok"; }}
    }}
}}
"""


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _with_pdeathsig(argv: list[str]) -> list[str]:
    """``argv`` under ``setpriv --pdeathsig TERM`` where util-linux has it: nginx gets SIGTERM when this
    process dies (its fast shutdown: the workers go too), so a killed bench leaves no nginx behind. (Not a
    ``preexec_fn``: the native clients' runtime threads are up by then, and a fork with threads running
    must not run Python before exec.)"""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return argv
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited
    except OSError:
        return True


def _stop_nginx(proc: subprocess.Popen[bytes], workers: list[int]) -> None:
    """SIGTERM to the master (fast shutdown: it stops its workers and exits), then make sure: the
    master's and every worker's pid gone, SIGKILL (by pid) to whatever outlived 10 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    deadline = time.monotonic() + 10
    for pid in workers:
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _gone(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def nginx_server(streams: int = NGINX_STREAMS) -> Iterator[Server]:
    """nginx in its own process (``daemon off``, one worker), its config, pid, logs and temp dirs in a
    private temp dir, on two free ports: HTTP/1.1 and h2c (prior knowledge: ``listen ... http2`` without
    TLS speaks only h2). ``/ok`` answers 200 ``ok``. Raises RuntimeError when it doesn't come up."""
    binary = nginx_path()
    if binary is None:
        raise RuntimeError("nginx not found")
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp:
        # As root the workers would switch to "nobody", which can't enter the 0700 temp dir.
        user = f"user {pwd.getpwuid(0).pw_name};" if os.geteuid() == 0 else ""
        last = ""
        for _ in range(3):  # a port picked free can be taken before nginx binds it: new ports, again
            h1, h2 = _free_ports(2)
            conf = os.path.join(tmp, "nginx.conf")
            with open(conf, "w") as f:
                f.write(_NGINX_CONF.format(tmp=tmp, user=user, streams=streams, h1=h1, h2=h2))
            with open(os.path.join(tmp, "stderr.log"), "wb") as err:
                proc = subprocess.Popen(
                    _with_pdeathsig([binary, "-p", tmp, "-c", conf, "-e", os.path.join(tmp, "error.log")]),
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                )
            workers: list[int] = []
            try:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and proc.poll() is None:
                    workers = children(proc.pid)
                    if workers and all(_accepts(port) for port in (h1, h2)):
                        break
                    time.sleep(0.02)
                else:
                    last = _read(os.path.join(tmp, "error.log")) + _read(os.path.join(tmp, "stderr.log"))
                    _stop_nginx(proc, workers)
                    continue
                server = Server(
                    f"nginx (1 worker, {streams} streams)",
                    f"http://127.0.0.1:{h1}",
                    f"http://127.0.0.1:{h2}",
                    workers,
                )
                yield server
                return
            finally:
                _stop_nginx(proc, workers)
        raise RuntimeError(f"nginx did not start: {last.strip()[-500:]!r}")


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


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
