"""AsyncPerfClient's backends side by side: what a caller sees is the same on aiohttp and on pyreqwest.

The whole directory runs again on pyreqwest with ``--http-backend pyreqwest`` (conftest); these tests run
both backends in the default run too, on what differs most between them: encoded bodies and their
headers, which failures may be resent, and the choice itself (config, the missing package).
"""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import json
import socket
import subprocess
import sys
import traceback
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from http_h2_servers import HypercornH2C, read_body

from infra.http import AsyncPerfClient, PerfClient, RetryConfig, TransportError
from infra.testing.fault_server import FaultServer

pytestmark = pytest.mark.each_backend
NO_PYREQWEST = importlib.util.find_spec("pyreqwest") is None
BACKENDS = [
    "aiohttp",
    pytest.param(
        "pyreqwest",
        marks=pytest.mark.skipif(
            NO_PYREQWEST, reason="pyreqwest not installed (the native extra; CPython >= 3.11)"
        ),
    ),
]
# A child process's prelude: pyreqwest fails to import there, as where the native extra is not installed.
BLOCK_PYREQWEST = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] == 'pyreqwest': raise ImportError('blocked: ' + name)\n"
    "sys.meta_path.insert(0, Block())\n"
)
TEXT = b"".join(b"line %d of a body worth compressing\n" % i for i in range(400))


@pytest.fixture
async def encoded_server() -> AsyncIterator[str]:
    """/gzip, /deflate (zlib-wrapped), /raw-deflate: TEXT encoded, with Content-Encoding and the encoded
    length; /headers: the request's headers as JSON."""

    def answer(body: bytes, encoding: str) -> web.Response:
        return web.Response(body=body, headers={"Content-Encoding": encoding, "X-Twice": "a"})

    async def gz(request: web.Request) -> web.Response:
        return answer(gzip.compress(TEXT), "gzip")

    async def deflate(request: web.Request) -> web.Response:
        return answer(zlib.compress(TEXT), "deflate")

    async def raw_deflate(request: web.Request) -> web.Response:
        d = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return answer(d.compress(TEXT) + d.flush(), "deflate")

    async def headers(request: web.Request) -> web.Response:
        return web.json_response({k.lower(): v for k, v in request.headers.items()})

    app = web.Application()
    app.router.add_get("/gzip", gz)
    app.router.add_get("/deflate", deflate)
    app.router.add_get("/raw-deflate", raw_deflate)
    app.router.add_get("/headers", headers)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("path", ["/gzip", "/deflate", "/raw-deflate"])
async def test_encoded_bodies_arrive_inflated_with_the_servers_headers(
    encoded_server: str, backend: str, path: str
) -> None:
    """gzip / deflate bodies come back inflated, read whole or streamed, and the headers are the server's:
    Content-Encoding and the encoded Content-Length kept (reqwest's own decoder drops both)."""
    async with AsyncPerfClient(backend=backend) as client:
        r = await client.get(encoded_server + path)
        assert r.content == TEXT
        assert r.headers["content-encoding"] == "deflate" if "deflate" in path else "gzip"
        assert int(r.headers["content-length"]) < len(TEXT) // 4
        assert r.headers.get_all("x-twice") == ["a"]
        async with client.stream("GET", encoded_server + path) as s:
            lines = [line async for line in s.aiter_lines()]
        assert b"\n".join(lines) + b"\n" == TEXT


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_server_sees_the_same_request_headers(encoded_server: str, backend: str) -> None:
    """Our default headers (and no backend's own: no second user agent, no br/zstd offered), a caller's
    header over ours."""
    async with AsyncPerfClient(backend=backend) as client:
        sent = json.loads((await client.get(encoded_server + "/headers")).content)
        mine = json.loads((await client.get(encoded_server + "/headers", headers={"Accept": "x/y"})).content)
    assert sent["user-agent"].startswith("perf-infra/")
    assert (sent["accept"], sent["accept-encoding"]) == ("*/*", "gzip, deflate")
    assert set(sent) <= {"user-agent", "accept", "accept-encoding", "host"}, sent
    assert mine["accept"] == "x/y"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_reset_before_the_response_is_not_resent_for_a_post(
    server: FaultServer, backend: str
) -> None:
    """reqwest calls a reset after the request went out a ConnectError too; it may have run, so a plain POST
    is not sent again (a GET is), while a refused connection is retried for any method."""
    fast = RetryConfig(attempts=2, backoff=(0.01,))
    key = f"post-{backend}"
    async with AsyncPerfClient(backend=backend, retry=fast) as client:
        with pytest.raises(TransportError) as info:
            await client.post(f"{server.url}/reset-before-headers/{key}", content=b"x")
        assert info.value.kind == "read"
        assert server.hits[f"reset-before-headers/{key}"] == 1
        with pytest.raises(TransportError) as info:
            await client.get(f"{server.url}/reset-before-headers/get-{key}")
        assert server.hits[f"reset-before-headers/get-{key}"] == 3
        with pytest.raises(TransportError) as info:
            await client.post("http://127.0.0.1:9/refused", content=b"x")
        assert info.value.kind == "connect" and len(info.value.history) == 3


@pytest.mark.parametrize("backend", BACKENDS)
async def test_each_backend_reports_its_own_connections(server: FaultServer, backend: str) -> None:
    async with AsyncPerfClient(backend=backend) as client:
        assert (await client.get(f"{server.url}/ok")).http_version == "HTTP/1.1"
        stats = client.pool_stats()
    assert stats["in_use"] == 0
    assert stats.get("reqwest_active") == (0 if backend == "pyreqwest" else None)


def test_asking_for_pyreqwest_without_it_installed_says_what_to_install() -> None:
    """A ConfigError naming http.backend and the extra, when the client is made (not on its first call)."""
    code = (
        BLOCK_PYREQWEST + "from infra.errors import ConfigError\n"
        "from infra.http import AsyncPerfClient\n"
        "AsyncPerfClient(backend='aiohttp')\n"
        "try:\n"
        "    AsyncPerfClient(backend='pyreqwest')\n"
        "except ConfigError as exc:\n"
        "    print(exc.problems[0].where, '|', exc.problems[0].message)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    where, message = out.strip().split(" | ", 1)
    assert where == "http.backend"
    assert "perf-infra[native]" in message


def test_the_aiohttp_backend_never_loads_pyreqwest(server: FaultServer) -> None:
    code = (
        "import asyncio, sys\n"
        "from infra.http import AsyncPerfClient\n"
        "async def main():\n"
        "    async with AsyncPerfClient() as c:\n"
        f"        assert (await c.get('{server.url}/ok')).status == 200\n"
        "asyncio.run(main())\n"
        "print('pyreqwest' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_no_secret_anywhere_in_a_failed_calls_traceback(server: FaultServer, backend: str) -> None:
    """The whole chain a ``log.exception`` would print (our error, the backend's cause, their messages)
    names no path, query or userinfo: reqwest writes the full URL into its errors, so the pyreqwest backend
    cuts those to the origin."""
    secret = "s3cr3t-in-the-url"
    host = server.url.split("://", 1)[1]
    urls = [
        f"{server.url}/reset-before-headers/{secret}?api_key={secret}",
        f"{server.url}/reset-after-headers/{secret}?api_key={secret}",
        f"{server.url}/truncated?api_key={secret}",
        f"http://user:{secret}@{host}/reset-before-headers/u?api_key={secret}",
        f"http://127.0.0.1:9/refused?api_key={secret}",
    ]
    async with AsyncPerfClient(backend=backend, retry=RetryConfig(attempts=0)) as client:
        for url in urls:
            with pytest.raises(TransportError) as info:
                await client.get(url)
            printed = "".join(traceback.format_exception(info.value))
            assert secret not in printed, printed
        with pytest.raises(TransportError) as info:
            async with client.stream("GET", f"{server.url}/reset-after-headers/{secret}?k={secret}") as resp:
                async for _ in resp.aiter_bytes():
                    pass
        assert secret not in "".join(traceback.format_exception(info.value))


def test_the_sync_client_ignores_the_async_backend_choice(server: FaultServer) -> None:
    """``backend: "pyreqwest"`` in a shared config leaves PerfClient on httpx, HTTP/1.1 stays HTTP/1.1."""
    with PerfClient(backend="pyreqwest") as client:
        r = client.get(f"{server.url}/ok")
    assert (r.status, r.http_version) == (200, "HTTP/1.1")


def test_a_connection_dropped_under_its_http2_streams_is_closed_not_read_on_pyreqwest() -> None:
    """hyper fails every stream of an HTTP/2 connection that went away under them ("stream closed
    because of a broken pipe", what a rotating server's close right after GOAWAY gives): that is CLOSED,
    neutral for the breaker, as httpx's WriteError after a GOAWAY is. As READ, one rotation with five
    POSTs in flight counted five failures and opened the breaker against a healthy server (seen in
    test_goaway_never_runs_a_plain_post_twice on this backend). A plain reset stays READ."""
    pytest.importorskip("pyreqwest")
    from pyreqwest.exceptions import ConnectError, ReadError

    from infra.http._classify import classify_pyreqwest
    from infra.http._core import CLOSED, READ

    def err(kind: type[Exception], *messages: str) -> Exception:
        return kind("error sending request", {"causes": [{"message": m} for m in messages]})

    dropped = err(
        ConnectError,
        "client error (SendRequest)",
        "connection error",
        "stream closed because of a broken pipe",
    )
    assert classify_pyreqwest(dropped) == CLOSED
    assert classify_pyreqwest(err(ReadError, "stream closed because of a broken pipe")) == CLOSED
    assert (
        classify_pyreqwest(err(ConnectError, "client error (SendRequest)", "connection reset by peer"))
        == READ
    )


@pytest.fixture(scope="module")
def h2c_url() -> Iterator[str]:
    pytest.importorskip("hypercorn")
    with HypercornH2C() as srv:
        yield srv.url


@pytest.mark.parametrize(
    ("choice", "carrier"),
    [
        pytest.param(
            "auto", "reqwest_active", marks=pytest.mark.skipif(NO_PYREQWEST, reason="pyreqwest not installed")
        ),
        pytest.param(
            "pyreqwest",
            "reqwest_active",
            marks=pytest.mark.skipif(NO_PYREQWEST, reason="pyreqwest not installed"),
        ),
        ("httpx", "httpx_active"),
    ],
)
async def test_http2_backend_picks_what_carries_http2_beside_aiohttp(
    server: FaultServer, h2c_url: str, choice: str, carrier: str
) -> None:
    """With the default backend (aiohttp, no HTTP/2 of its own), one client speaks HTTP/1.1 over aiohttp
    and a host in ``http2_hosts`` over ``http2_backend``: "auto" is pyreqwest where it is installed."""
    async with AsyncPerfClient(http2_hosts=[h2c_url.split("//", 1)[1]], http2_backend=choice) as client:
        h1 = await client.get(f"{server.url}/ok")
        h2 = await client.post(f"{h2c_url}/a", content=b"12345")
        stats = client.pool_stats()
    assert (h1.status, h1.http_version) == (200, "HTTP/1.1")
    assert (h2.status, h2.http_version, h2.content) == (200, "HTTP/2", b"2 POST 5")
    assert stats["aiohttp_acquired"] == 0 and stats[carrier] == 0
    assert ("httpx_active" in stats) == (carrier == "httpx_active")
    assert ("reqwest_active" in stats) == (carrier == "reqwest_active")


def test_http2_backend_auto_without_pyreqwest_is_httpx_and_asking_for_it_says_what_to_install(
    h2c_url: str,
) -> None:
    """Where pyreqwest can't load, "auto" carries HTTP/2 over httpx, and ``http2_backend="pyreqwest"`` is
    a ConfigError naming ``http.http2_backend`` when the client is made."""
    code = (
        BLOCK_PYREQWEST + "import asyncio\n"
        "from infra.errors import ConfigError\n"
        "from infra.http import AsyncPerfClient\n"
        f"hosts = ['{h2c_url.split('//', 1)[1]}']\n"
        "async def main():\n"
        "    async with AsyncPerfClient(http2_hosts=hosts) as c:\n"
        f"        r = await c.get('{h2c_url}/a')\n"
        "        print(r.http_version, sorted(c.pool_stats()))\n"
        "asyncio.run(main())\n"
        "try:\n"
        "    AsyncPerfClient(http2_hosts=hosts, http2_backend='pyreqwest')\n"
        "except ConfigError as exc:\n"
        "    print(exc.problems[0].where, '|', exc.problems[0].message)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    first, second = out.strip().splitlines()
    assert first == "HTTP/2 ['aiohttp_acquired', 'httpx_active', 'in_use']"
    where, message = second.split(" | ", 1)
    assert where == "http.http2_backend"
    assert "perf-infra[native]" in message and "'httpx'" in message


async def _chunks_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI: five chunks ``chunk 0\n`` .. ``chunk 4\n`` in one streamed 200."""
    if scope["type"] != "http":
        return
    await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for i in range(5):
        await send({"type": "http.response.body", "body": b"chunk %d\n" % i, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


class _LosesACancel:
    """Awaits like pyreqwest 0.15 does now and then: a ``task.cancel()`` that lands while it waits is
    swallowed and the real result comes back (``cancelling()`` stays raised, no CancelledError follows),
    or, with ``error``, that error comes back instead (reqwest's own timeout, ``_reqwest.MARGIN`` past our
    timer, winning over the timer's cancel). ``entered`` is set while it waits, so the test cancels it
    right there."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.entered = asyncio.Event()
        self.lost = 0
        self.error = error

    async def around(self, real: Callable[[], Awaitable[Any]]) -> Any:
        if self.lost:  # once
            return await real()
        self.entered.set()
        try:
            await asyncio.get_running_loop().create_future()  # until cancelled
        except asyncio.CancelledError:
            self.lost += 1
        if self.error is not None:
            raise self.error
        return await real()


class _Proxy:
    def __init__(self, real: Any, name: str, around: _LosesACancel) -> None:
        self._real, self._name, self._around = real, name, around

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name == self._name:
            return lambda *a: self._around.around(lambda: attr(*a))
        return attr


@pytest.mark.skipif(NO_PYREQWEST, reason="pyreqwest not installed")
@pytest.mark.parametrize("how", ["result", "error"])
@pytest.mark.parametrize("where", ["send", "read", "stream"])
async def test_a_cancel_pyreqwest_loses_is_raised_again(
    monkeypatch: pytest.MonkeyPatch, where: str, how: str
) -> None:
    """pyreqwest 0.15 sometimes swallows a ``task.cancel()`` that lands as an await of its completes
    (plain pyreqwest over h2c: up to 57 of 200 streamed readers cancelled after their 3rd chunk read on to
    the end; 1 of 300 sends cancelled while awaiting the headers returned the response). Cancelled there,
    a call must end in CancelledError all the same (its slot and connection back), not hand the cancelled
    task a response nor keep streaming: the backend raises the lost cancel again (``cancels``). The same
    when reqwest's error comes back in its place (``how="error"``): the cancel, not the error."""
    from pyreqwest.exceptions import ReadTimeoutError

    from infra.http._reqwest import PyreqwestBackend, PyreqwestBody

    lose = _LosesACancel(ReadTimeoutError("timed out", {"causes": None}) if how == "error" else None)
    if where == "send":
        build = PyreqwestBackend._request

        def request(self: Any, *args: Any) -> Any:
            return _Proxy(build(self, *args), "__aenter__", lose)

        monkeypatch.setattr(PyreqwestBackend, "_request", request)
    elif where == "read":
        send = PyreqwestBackend.send

        async def sent(self: Any, *args: Any) -> Any:
            got = await send(self, *args)
            got.resp = _Proxy(got.resp, "bytes", lose)
            return got

        monkeypatch.setattr(PyreqwestBackend, "send", sent)
    else:
        init = PyreqwestBody.__init__

        def body(self: Any, *args: Any) -> None:
            init(self, *args)
            self._reader = _Proxy(self._reader, "read_chunk", lose)

        monkeypatch.setattr(PyreqwestBody, "__init__", body)

    with HypercornH2C(app=_chunks_app) as srv:
        async with AsyncPerfClient(http2=True, http2_backend="pyreqwest") as client:
            got: list[bytes] = []

            async def call() -> int:
                if where != "stream":
                    return (await client.get(f"{srv.url}/a")).status
                async with client.stream("GET", f"{srv.url}/a") as r:
                    async for chunk in r.aiter_bytes():
                        got.append(chunk)
                return r.status

            task = asyncio.create_task(call())
            await asyncio.wait_for(lose.entered.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
            assert lose.lost == 1
            assert len(got) <= 1  # the first chunk may have come before the cancel, no more
            assert client.pool_stats()["in_use"] == 0
            assert client.pool_stats()["reqwest_active"] == 0
            assert (await client.get(f"{srv.url}/a")).status == 200  # the client goes on


def test_a_request_cut_off_by_the_servers_early_answer_is_closed_not_fatal_on_httpx() -> None:
    """h2 refusing to send the rest of a request on a stream the server closed (it answered before reading
    the body, as nginx's ``return 200`` does; httpcore drops that answer) is CLOSED: idempotent-only retry,
    neutral for the breaker. As FATAL it counted as a failure: 500 POSTs to such an nginx ended 379 in
    CircuitOpenError (session 16's trial). Chained as httpx raises it; nginx isn't on the CI machine."""
    import h2.exceptions
    import httpcore
    import httpx

    from infra.http._classify import FATAL, classify_httpx
    from infra.http._core import CLOSED

    def raised(inner: BaseException) -> httpx.LocalProtocolError:
        try:
            try:
                try:
                    raise inner
                except Exception as exc:
                    raise httpcore.LocalProtocolError(exc) from exc
            except httpcore.LocalProtocolError as exc:
                raise httpx.LocalProtocolError(str(exc)) from exc
        except httpx.LocalProtocolError as exc:
            return exc

    assert classify_httpx(raised(h2.exceptions.StreamClosedError(29))) == CLOSED
    assert classify_httpx(raised(h2.exceptions.ProtocolError("bad header"))) == FATAL
