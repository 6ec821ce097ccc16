"""Fixtures for infra.http: real fault servers on 127.0.0.1, and one client API over both clients.

``api`` is parametrized over the async client and the sync client (run in a worker thread), so every
behaviour test in the matrix runs against both and proves they behave the same.

``--http-backend pyreqwest`` runs the whole directory again with every AsyncPerfClient that would use
aiohttp (HTTP/1.1) or httpx for ``http2_hosts`` (HTTP/2) on the native backend instead (``.ci/run`` has
that step): the same tests, so each behaviour they pin holds on both. In that run the matrix keeps only
its async kind (the sync and httpx kinds ran already in the default run); a test about aiohttp itself is
marked ``aiohttp_only``, a slow one about our layer alone ``layer_only``, each with its reason, and left
out; a promise the native backend does not keep yet is ``pyreqwest_falls_short``: a strict xfail there.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from http_backends import backend_active

from infra.http import AsyncPerfClient, HttpConfig, PerfClient
from infra.testing.fault_server import FaultServer

BACKENDS = ("aiohttp", "pyreqwest")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--http-backend",
        choices=BACKENDS,
        default="aiohttp",
        help="tests/http: the backend AsyncPerfClient runs on where its settings say aiohttp (default)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "aiohttp_only(reason): a test of aiohttp itself, not run with --http-backend pyreqwest"
    )
    config.addinivalue_line(
        "markers",
        "layer_only(reason): a test of our own layer whatever carries the bytes (and slow): not rerun with "
        "--http-backend pyreqwest",
    )
    config.addinivalue_line(
        "markers",
        "each_backend: runs each backend by name itself (test_http_backends.py): not rerun with "
        "--http-backend pyreqwest, which would turn its aiohttp half into a second pyreqwest half",
    )
    config.addinivalue_line(
        "markers",
        "pyreqwest_falls_short(reason): a promise the pyreqwest backend does not keep yet; with "
        "--http-backend pyreqwest the test runs as a strict xfail (it must fail, for that reason)",
    )


def http_backend(config: pytest.Config) -> str:
    # getoption's default: a run from the repository root loads this conftest too late to add the option
    return str(config.getoption("--http-backend", default="aiohttp"))


#: Cases of shared tests whose exact bytes pyreqwest can't send (node id's tail -> why): strict xfails there.
PYREQWEST_SHORT = {
    "test_http_request_fidelity.py::test_every_backend_sends_the_same_request[GET--kw2]": (
        "reqwest's URL parser (WHATWG, special-query set) sends ' in a query as %27; yarl and httpx send it "
        "as is (the same query once decoded)"
    ),
    "test_http_request_fidelity.py::test_every_backend_sends_aiohttps_request_target[quote_in_query]": (
        "reqwest's URL parser (WHATWG, special-query set) encodes ' in a query as %27 whatever it is given; "
        "yarl (and httpx given yarl's string) send it as is"
    ),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if http_backend(config) == "aiohttp":
        return
    keep, drop = [], []
    for item in items:
        short = item.get_closest_marker("pyreqwest_falls_short")
        why = short.kwargs.get("reason", "") if short is not None else None
        why = next((r for tail, r in PYREQWEST_SHORT.items() if item.nodeid.endswith(tail)), why)
        if why is not None:
            item.add_marker(pytest.mark.xfail(reason=why, strict=True))
        param = getattr(item, "callspec", None)
        kind = param.params.get("make_api") if param is not None else None
        own = any(item.get_closest_marker(m) for m in ("aiohttp_only", "layer_only", "each_backend"))
        if own or kind in ("sync", "async-httpx"):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True)
def _native_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``--http-backend pyreqwest``: AsyncPerfClients configured for aiohttp route to pyreqwest
    (HTTP/2 hosts too), through the one function that picks a route's backend. In the default run,
    ``http2_backend: "auto"`` resolves to httpx, so the pure-Python HTTP/2 path (what a machine without the
    native extra runs) is the one the suite covers there; test_http_backends.py tests "auto" itself."""
    if request.node.get_closest_marker("each_backend"):
        return
    if http_backend(request.config) != "pyreqwest":
        import infra.http._routing as routing

        monkeypatch.setattr(routing, "_native", [False])
        return
    import infra.http._async_client as async_client
    from infra.http._routing import async_backend_for

    def native(settings: HttpConfig, url: str, origin: str) -> str:
        if settings.backend == "aiohttp":
            settings = dataclasses.replace(settings, backend="pyreqwest")
        return async_backend_for(settings, url, origin)

    monkeypatch.setattr(async_client, "async_backend_for", native)


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv


class ExternalServer:
    """A FaultServer in its own process: for timing-sensitive tests, where a server thread would compete
    with the client for the GIL."""

    def __init__(self) -> None:
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "infra.testing.fault_server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"fault server process did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
            self.proc.wait(10)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def external_server() -> Iterator[ExternalServer]:
    srv = ExternalServer()
    yield srv
    srv.close()


class Api:
    """The same awaitable calls over AsyncPerfClient or PerfClient."""

    def __init__(self, kind: str, client: Any) -> None:
        self.kind = kind
        self.client = client

    async def request(self, method: str, url: str, **kw: Any) -> Any:
        if self.kind == "async":
            return await self.client.request(method, url, **kw)
        return await asyncio.to_thread(self.client.request, method, url, **kw)

    async def get(self, url: str, **kw: Any) -> Any:
        return await self.request("GET", url, **kw)

    async def post(self, url: str, **kw: Any) -> Any:
        return await self.request("POST", url, **kw)

    async def stream_lines(
        self, method: str, url: str, *, stop_after: int | None = None, **kw: Any
    ) -> list[bytes]:
        """Open a stream, read lines (all, or ``stop_after``), close it."""
        if self.kind == "async":
            out: list[bytes] = []
            async with self.client.stream(method, url, **kw) as resp:
                async for line in resp.aiter_lines():
                    out.append(line)
                    if stop_after is not None and len(out) >= stop_after:
                        break
            return out

        def run() -> list[bytes]:
            got: list[bytes] = []
            with self.client.stream(method, url, **kw) as resp:
                for line in resp.iter_lines():
                    got.append(line)
                    if stop_after is not None and len(got) >= stop_after:
                        break
            return got

        return await asyncio.to_thread(run)

    def in_use(self) -> int:
        return int(self.client.pool_stats()["in_use"])

    def backend_active(self) -> int:
        return backend_active(self.client.pool_stats())

    async def close(self) -> None:
        if self.kind == "async":
            await self.client.aclose()
        else:
            self.client.close()


@pytest.fixture(params=["async", "sync", "async-httpx"])
async def make_api(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """``api = make_api(retry=RetryConfig(...))``: a client of this test's kind with those settings.

    Kinds: AsyncPerfClient on aiohttp, PerfClient, and AsyncPerfClient with ``backend="httpx"``: one
    matrix, so every backend must behave the same."""
    kind = request.param
    made: list[Api] = []

    def make(settings: HttpConfig | None = None, **overrides: Any) -> Api:
        if kind == "sync":
            client: Any = PerfClient(settings, **overrides)
        elif kind == "async-httpx":
            client = AsyncPerfClient(settings, backend="httpx", **overrides)
        else:
            client = AsyncPerfClient(settings, **overrides)
        api = Api("sync" if kind == "sync" else "async", client)
        made.append(api)
        return api

    yield make
    for api in made:
        await api.close()


@pytest.fixture
def api(make_api: Any) -> Api:
    """A client with default settings except a fast backoff (the rules, not the waits, are under test)."""
    from infra.http import RetryConfig

    return make_api(retry=RetryConfig(backoff=(0.01, 0.02, 0.04)))
