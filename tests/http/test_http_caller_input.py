"""A caller's mistake, or a value aiohttp takes, is decided before any try, the same on every backend.

A header with a control character is refused (ValueError, as aiohttp refuses it) and counted nowhere: it
was retried as a connect error on httpx and opened the origin's breaker. A text-mode file is sent as aiohttp
sends it (UTF-8, text/plain), an integer that isn't an int (numpy's int64) as the int, a list of bytes is
resent on a retry. With the layer off a seekable file survives aiohttp's own resend on a keep-alive
connection the server closed, as with a plain aiohttp session. Real servers on 127.0.0.1 throughout.
"""

from __future__ import annotations

import asyncio
import decimal
import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from recorder import Recorder

from infra.http import AsyncPerfClient, BreakerConfig, PerfClient, RetryConfig
from infra.metrics import get_metrics

FAST = RetryConfig(backoff=(0.01, 0.02, 0.04))
TRIP_FAST = BreakerConfig(consecutive_failures=3, adaptive=False)
SECRET = "Bearer abc123-secret"


def k() -> str:
    return uuid.uuid4().hex[:12]


def counted(origin: str) -> dict[str, Any]:
    """All calls get_stats() holds for ``origin``, every method together."""
    total = {"count": 0, "errors": 0}
    for name, row in get_metrics().get_stats().items():
        if name.startswith("http ") and name.endswith(" " + origin):
            total["count"] += int(row.get("count") or 0)
            total["errors"] += int(row.get("errors") or 0)
    return total


# -- 1. a control character in a header: refused before any try, never retried, never counted --------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": SECRET + "\n"},  # an API key read from a file with its trailing newline
        {"X-A": "a\r\nEvil: 1"},
        {"X-Nul": "a\x00b"},
        {"X-Bad\nName": "1"},
    ],
)
async def test_a_control_character_in_a_header_is_refused_before_any_try(
    make_api: Any, headers: dict[str, str]
) -> None:
    """Five such calls: each a ValueError naming the header (never its value), nothing sent, nothing counted;
    the origin's breaker stays closed, so the next good call is answered. httpx used to classify h11's
    LocalProtocolError as a connect error: 4 retries, then CircuitOpenError for every caller of the origin."""
    with Recorder() as rec:
        api = make_api(retry=FAST, breaker=TRIP_FAST)
        key = k()
        for _ in range(5):
            with pytest.raises(ValueError, match=r"(?i)header") as caught:
                await api.get(f"{rec.url}/r/{key}", headers=headers)
            assert "abc123" not in str(caught.value)
        assert rec.seen(key) == []
        assert counted(rec.url) == {"count": 0, "errors": 0}
        r = await api.get(f"{rec.url}/r/{key}", headers={"Authorization": SECRET})
        assert (r.status, r.attempts) == (200, 1)
        assert counted(rec.url) == {"count": 1, "errors": 0}


async def test_http2_origins_refuse_a_control_character_in_a_header_too() -> None:
    pytest.importorskip("hypercorn")
    import http_h2_servers

    with http_h2_servers.HypercornH2C() as srv:
        bad = {"Authorization": SECRET + "\n"}
        async with AsyncPerfClient(http2_hosts=[f"127.0.0.1:{srv.port}"], retry=FAST) as client:
            for _ in range(5):
                with pytest.raises(ValueError, match="'Authorization'"):
                    await client.get(f"{srv.url}/x", headers=bad)
            assert (await client.get(f"{srv.url}/x")).status == 200
        with PerfClient(http2=True, retry=FAST) as sync_client:
            for _ in range(5):
                with pytest.raises(ValueError, match="'Authorization'"):
                    await asyncio.to_thread(sync_client.get, f"{srv.url}/x", headers=bad)
            assert (await asyncio.to_thread(sync_client.get, f"{srv.url}/x")).status == 200


def test_only_h2s_closed_connection_is_a_connect_error() -> None:
    """httpx's LocalProtocolError is CONNECT (resent: nothing reached the server) only when h2 refused to
    open a stream on a closed connection; any other (a header h11 refuses) is FATAL: not retried, not the
    origin's fault."""
    import httpx

    from infra.http._classify import FATAL, classify_httpx
    from infra.http._core import CLOSED, CONNECT

    assert classify_httpx(httpx.LocalProtocolError("Illegal header value b'x'")) == FATAL
    closed = httpx.LocalProtocolError(
        "Invalid input ConnectionInputs.SEND_HEADERS in state ConnectionState.CLOSED"
    )
    assert classify_httpx(closed) == CONNECT
    # anything else h2 refuses on a closed connection reached the server: the rest of a request, or an
    # answer behind the server's GOAWAY (idempotent-only retry; as CONNECT a plain POST ran twice), also
    # where h2's own error comes through httpcore unwrapped
    import h2.exceptions

    for refused in ("SEND_DATA", "RECV_HEADERS", "RECV_DATA"):
        message = f"Invalid input ConnectionInputs.{refused} in state ConnectionState.CLOSED"
        assert classify_httpx(httpx.LocalProtocolError(message)) == CLOSED, refused
        assert classify_httpx(h2.exceptions.ProtocolError(message)) == CLOSED, refused


# -- 2. the layer off: a seekable file survives aiohttp's resend on a dropped keep-alive connection --------


async def _drops_every_second_request() -> tuple[
    asyncio.Server, list[tuple[int, str]], set[asyncio.Task[Any]]
]:
    """A raw HTTP/1.1 server: answers the first request of each keep-alive connection and closes the
    connection after reading the second one's body (a keep-alive timeout racing a reused connection).
    Records (length, sha) of every body it read; the third value holds its connections' handler tasks
    (a native backend closes its sockets on its own thread: the test waits for them before its loop
    ends, or a handler's writer outlives the loop)."""
    got: list[tuple[int, str]] = []
    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = 0
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                got.append((len(body), hashlib.sha256(body).hexdigest()[:12]))
                n += 1
                if n >= 2:
                    break
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=60\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), got, handlers


async def _stop(server: asyncio.Server, handlers: set[asyncio.Task[Any]]) -> None:
    server.close()
    await server.wait_closed()
    if handlers:
        _, pending = await asyncio.wait(handlers, timeout=30)
        for task in pending:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


@pytest.mark.parametrize("enabled", [False, True])
async def test_a_seekable_file_survives_a_dropped_keepalive_connection(enabled: bool, tmp_path: Path) -> None:
    """Two PUTs of a file that stands at an offset: the second goes on the connection the server then
    drops. Off, aiohttp resends it itself, as a plain session does (it was a TransportError: aiohttp can't
    replay an async generator); on, our retry resends it. Either way the server gets the whole body."""
    import aiohttp

    data = bytes(range(256)) * 400
    path = tmp_path / "up.bin"
    path.write_bytes(b"HEAD" + data)
    whole = (len(data), hashlib.sha256(data).hexdigest()[:12])
    server, got, handlers = await _drops_every_second_request()
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x"
    try:
        async with aiohttp.ClientSession() as plain:
            for _ in range(2):
                with path.open("rb") as f:
                    f.seek(4)
                    async with plain.put(url, data=f) as r:
                        assert r.status == 200  # what the off client must match
        assert got == [whole] * 3
        got.clear()
        async with AsyncPerfClient(enabled=enabled, retry=FAST) as client:
            for _ in range(2):
                with path.open("rb") as f:
                    f.seek(4)
                    assert (await client.put(url, content=f, idempotent=True)).status == 200
        assert got == [whole] * 3
    finally:
        await _stop(server, handlers)


# -- 3. a text-mode file is sent as aiohttp sends it, on every backend --------------------------------------


async def test_a_text_file_is_sent_as_aiohttp_sends_it(tmp_path: Path) -> None:
    """``open(path)`` without "b": aiohttp sends its text UTF-8 encoded, ``text/plain; charset=utf-8``;
    every backend now sends the same (ours raised TransportError and retried it; httpx a bare TypeError)."""
    import aiohttp

    path = tmp_path / "notes.txt"
    path.write_text("héllo\nwörld ✓\n" * 50, encoding="utf-8")

    def view(seen: Any) -> tuple[bytes, str | None, str | None]:
        return seen.body, seen.header("content-type"), seen.header("content-length")

    with Recorder() as rec:
        key = k()
        async with aiohttp.ClientSession() as plain:
            with path.open() as f:
                async with plain.post(f"{rec.url}/r/{key}", data=f) as r:
                    assert r.status == 200
        (expected,) = (view(s) for s in rec.seen(key))
        assert expected[0] == path.read_bytes()
        for label in ("aiohttp", "httpx", "sync", "off"):
            key = k()
            with path.open() as f:
                if label == "sync":
                    with PerfClient() as sync_client:
                        r = await asyncio.to_thread(sync_client.post, f"{rec.url}/r/{key}", content=f)
                else:
                    backend = "httpx" if label == "httpx" else "aiohttp"
                    fail = "" if label == "off" else "?fail=1"  # on: the retry resends the same bytes
                    async with AsyncPerfClient(backend=backend, enabled=label != "off", retry=FAST) as client:
                        r = await client.post(f"{rec.url}/r/{key}{fail}", content=f, idempotent=True)
            assert r.status == 200, label
            assert [view(s) for s in rec.seen(key)][-1] == expected, label


def test_a_text_mode_file_that_isnt_a_textiobase_is_text_too() -> None:
    import tempfile

    from infra.http._body import request_body

    with tempfile.SpooledTemporaryFile(mode="w+", encoding="utf-8") as f:
        f.write("héllo")
        f.seek(0)
        body, headers = request_body("POST", f, None, None)
    assert body == "héllo".encode()
    assert headers is not None and headers["Content-Type"] == "text/plain; charset=utf-8"


# -- 4. params: any exact integer is its int; a number yarl would truncate is refused -----------------------


class Index:
    """An integer that isn't an int (numpy's int64, duck-typed: numpy isn't a dependency)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __index__(self) -> int:
        return self.n


@pytest.mark.parametrize("enabled", [True, False])
async def test_an_integer_that_isnt_an_int_is_sent_as_its_int(make_api: Any, enabled: bool) -> None:
    """aiohttp sends top_k=5 for numpy's int64(5); both clients refused it, with the layer on and off."""
    with Recorder() as rec:
        api = make_api(enabled=enabled)
        key = k()
        r = await api.get(f"{rec.url}/r/{key}", params={"top_k": Index(5), "n": [Index(1), 2]})
        assert r.status == 200
        assert rec.seen(key)[0].target == f"/r/{key}?top_k=5&n=1&n=2"


@pytest.mark.parametrize("value", [decimal.Decimal("0.7"), 1 + 2j])
async def test_a_number_aiohttp_would_truncate_is_refused(make_api: Any, value: object) -> None:
    """yarl sends int(v) for any other number (numpy's float32(0.7) went as t=0): refused, naming the key."""
    with Recorder() as rec:
        api = make_api()
        key = k()
        with pytest.raises(TypeError, match="'t'"):
            await api.get(f"{rec.url}/r/{key}", params={"t": value})
        assert rec.seen(key) == []


def test_numpy_scalars_in_params() -> None:
    np = pytest.importorskip("numpy")
    from infra.http._url import encode_params

    assert encode_params({"k": np.int64(5), "u": np.uint8(7), "f": np.float64(0.5)}) == "k=5&u=7&f=0.5"
    for bad in (np.float32(0.7), np.bool_(True)):
        with pytest.raises(TypeError, match="'x'"):
            encode_params({"x": bad})


# -- 7. aiohttp's data= and a list body ---------------------------------------------------------------------


async def test_data_keyword_names_the_public_call_and_content(make_api: Any) -> None:
    api = make_api()
    with pytest.raises(TypeError, match="post\\(\\) got an unexpected keyword argument 'data'") as caught:
        await api.post("http://127.0.0.1:9/x", data=b"abc")
    assert "content=" in str(caught.value) and "call_args" not in str(caught.value)


async def test_a_list_of_bytes_is_resent_whole_on_a_retry(make_api: Any) -> None:
    """A list / tuple can be read again: it is retried like bytes (it was one-shot, answered 503)."""
    with Recorder() as rec:
        api = make_api(retry=FAST)
        key = k()
        r = await api.post(f"{rec.url}/r/{key}?fail=1", content=[b"ab", b"cd"], idempotent=True)
        assert (r.status, r.attempts) == (200, 2)
        assert [s.body for s in rec.seen(key)] == [b"abcd", b"abcd"]
