"""Fixtures for infra.http: real fault servers on 127.0.0.1, and one client API over both clients.

``api`` is parametrized over the async client and the sync client (run in a worker thread), so every
behaviour test in the matrix runs against both and proves they behave the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from infra.http import AsyncPerfClient, HttpConfig, PerfClient
from infra.testing.fault_server import FaultServer


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
        stats = self.client.pool_stats()
        return int(stats.get("aiohttp_acquired", stats.get("httpx_active", 0)))

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
