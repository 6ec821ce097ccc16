"""HTTP/2 through httpx + h2: a hypercorn h2c server, and a server rotating connections by GOAWAY."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from typing import Any

import pytest
from http_backends import backend_active
from http_h2_servers import HypercornH2C, RotatingH2Server, read_body, self_signed_cert

from infra.http import (
    AsyncPerfClient,
    BreakerConfig,
    DeadlineExceeded,
    PerfClient,
    RetryConfig,
    TimeoutConfig,
    TransportError,
)

pytest.importorskip("h2")


@pytest.fixture(scope="module")
def hypercorn_h2c():
    pytest.importorskip("hypercorn")
    with HypercornH2C() as srv:
        yield srv


async def test_hypercorn_h2c_async_and_sync(hypercorn_h2c: HypercornH2C) -> None:
    """http2=True speaks HTTP/2 (prior knowledge over cleartext) from both clients; bodies go through."""
    async with AsyncPerfClient(http2=True) as client:
        r = await client.get(f"{hypercorn_h2c.url}/a")
        assert (r.status, r.http_version, r.content) == (200, "HTTP/2", b"2 GET 0")
        r = await client.post(f"{hypercorn_h2c.url}/a", content=b"12345")
        assert r.content == b"2 POST 5"
        async with client.stream("GET", f"{hypercorn_h2c.url}/s") as s:
            assert await s.aread() == b"2 GET 0"
        assert client.pool_stats()["in_use"] == 0
    with PerfClient(http2=True) as sync_client:
        r = sync_client.get(f"{hypercorn_h2c.url}/a")
        assert (r.status, r.http_version) == (200, "HTTP/2")


async def test_http2_cancellation_and_unread_streams_leak_nothing(hypercorn_h2c: HypercornH2C) -> None:
    """Over HTTP/2 too: cancelled calls (double cancel included) and unread streams free their slots."""
    async with AsyncPerfClient(http2=True) as client:
        tasks = [asyncio.create_task(client.get(f"{hypercorn_h2c.url}/slow?delay=2")) for _ in range(8)]
        await asyncio.sleep(0.2)
        for t in tasks:
            t.cancel()
        await asyncio.sleep(0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _ in range(5):
            async with client.stream("GET", f"{hypercorn_h2c.url}/s"):
                pass
        stats = client.pool_stats()
        assert stats["in_use"] == 0 and backend_active(stats) == 0 and len(stats) == 3, stats
        assert (await client.get(f"{hypercorn_h2c.url}/a")).status == 200


@pytest.fixture(scope="module")
def hypercorn_tls(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("hypercorn")
    pytest.importorskip("cryptography")
    certfile, keyfile, cafile = self_signed_cert(str(tmp_path_factory.mktemp("tls")))
    with HypercornH2C(certfile, keyfile) as srv:
        yield srv, cafile


async def test_tls_h2_by_alpn_and_tls_http11(hypercorn_tls) -> None:
    """Over TLS, http2=True negotiates h2 by ALPN; the aiohttp path speaks HTTP/1.1 to the same server;
    PerfClient does both. The private CA comes in through verify=<CA bundle>."""
    srv, ca = hypercorn_tls
    async with AsyncPerfClient(http2=True, verify=ca) as client:
        r = await client.get(f"{srv.url}/a")
        assert (r.status, r.http_version, r.content) == (200, "HTTP/2", b"2 GET 0")
    async with AsyncPerfClient(verify=ca) as client:
        r = await client.get(f"{srv.url}/a")
        assert (r.status, r.http_version, r.content) == (200, "HTTP/1.1", b"1.1 GET 0")
    with PerfClient(http2=True, verify=ca) as sync_client:
        assert sync_client.get(f"{srv.url}/a").http_version == "HTTP/2"


@pytest.mark.parametrize("http2", [True, False])
async def test_a_certificate_that_does_not_verify_is_fatal_and_tried_once(hypercorn_tls, http2: bool) -> None:
    """Against the system roots the private CA's certificate fails: a fatal error, never retried; and
    verify=False reaches the server (each backend's TLS: OpenSSL for aiohttp / httpx, rustls for
    pyreqwest)."""
    srv, _ = hypercorn_tls
    async with AsyncPerfClient(http2=http2, retry=RetryConfig(backoff=(0.001,))) as client:
        with pytest.raises(TransportError) as info:
            await client.get(f"{srv.url}/a")
        assert info.value.kind == "fatal" and len(info.value.history) == 1
    async with AsyncPerfClient(http2=http2, verify=False) as client:
        assert (await client.get(f"{srv.url}/a")).status == 200


async def test_untrusted_certificate_fails_at_once(hypercorn_tls, make_api) -> None:
    """A certificate that doesn't verify is final: TransportError, one attempt, never retried."""
    srv, _ = hypercorn_tls
    api = make_api()
    with pytest.raises(TransportError) as info:
        await api.get(f"{srv.url}/a")
    assert info.value.attempts == 1


async def test_http2_hosts_selects_origins(hypercorn_h2c: HypercornH2C, server) -> None:
    """Only hosts listed in http2_hosts go over HTTP/2; the rest stay on aiohttp / HTTP/1.1."""
    async with AsyncPerfClient(http2_hosts=[f"127.0.0.1:{hypercorn_h2c.port}"]) as client:
        assert (await client.get(f"{hypercorn_h2c.url}/a")).http_version == "HTTP/2"
        assert (await client.get(f"{server.url}/ok")).http_version == "HTTP/1.1"


async def test_goaway_rotation_every_1000_streams_loses_no_request() -> None:
    """3000 GETs and 1000 POSTs (idempotent=True) at concurrency 50 against a server that sends GOAWAY every
    1000 streams: 0 failures. (httpx alone fails ~3% of these: WriteError / RemoteProtocolError.)"""
    with RotatingH2Server(rotate_every=1000) as srv:
        outcomes: collections.Counter[str] = collections.Counter()
        sem = asyncio.Semaphore(50)
        async with AsyncPerfClient(http2=True) as client:

            async def one(method: str) -> None:
                async with sem:
                    try:
                        r = await client.request(
                            method,
                            f"{srv.url}/x",
                            content=b"a" if method == "POST" else None,
                            idempotent=method == "POST",
                        )
                        outcomes[str(r.status)] += 1
                    except Exception as exc:  # counted, asserted below
                        outcomes[type(exc).__name__] += 1

            await asyncio.gather(*(one("GET") for _ in range(3000)), *(one("POST") for _ in range(1000)))
            assert client.pool_stats()["in_use"] == 0
        assert outcomes == {"200": 4000}
        assert srv.rotations >= 3


async def test_rotation_under_100_streams_in_flight_loses_no_request_to_the_retry_budget() -> None:
    """A server rotating every 100 streams while ~100 calls are in flight on its connection (one
    multiplexed connection, the default http2_max_streams): each rotation fails dozens of streams at once
    (httpx fails even streams the server answered, see _classify), and their retries must not spend the
    retry budget, which exists for a sick upstream, not a rotating one: 1,000 GETs, 1,000 answered (on
    the budget's default 0.2 a request, 249 of them ended in RetryBudgetExhausted)."""
    with RotatingH2Server(rotate_every=100) as srv:
        outcomes: collections.Counter[str] = collections.Counter()
        tries = 0
        sem = asyncio.Semaphore(100)
        async with AsyncPerfClient(http2=True) as client:

            async def one() -> None:
                nonlocal tries
                async with sem:
                    try:
                        r = await client.get(f"{srv.url}/x")
                        outcomes[str(r.status)] += 1
                        tries += r.attempts
                    except Exception as exc:  # counted, asserted below
                        outcomes[type(exc).__name__] += 1

            await asyncio.gather(*(one() for _ in range(1000)))
            assert client.pool_stats()["in_use"] == 0
        assert outcomes == {"200": 1000}
        assert srv.rotations >= 9
        assert tries >= 1000


async def test_goaway_never_runs_a_plain_post_twice() -> None:
    """Without opt-in, a POST caught in a rotation is resent only when the GOAWAY proves it never ran
    (httpcore resends streams above last_stream_id); otherwise it fails. The server never runs one twice."""
    with RotatingH2Server(rotate_every=300) as srv:
        ok = 0
        failed: list[str] = []
        sem = asyncio.Semaphore(50)
        async with AsyncPerfClient(http2=True) as client:

            async def one(i: int) -> None:
                nonlocal ok
                async with sem:
                    try:
                        await client.post(f"{srv.url}/x", content=f"post-{i}".encode())
                        ok += 1
                    except TransportError as exc:
                        failed.append(exc.kind)

            await asyncio.gather(*(one(i) for i in range(1500)))
        assert max(srv.bodies_run.values()) == 1  # no POST ran twice
        assert srv.by_method["POST"] >= ok
        assert ok + len(failed) == 1500
        assert set(failed) <= {"closed", "read"}


async def test_a_post_answered_behind_the_goaway_never_runs_twice() -> None:
    """nginx at keepalive_requests sends its GOAWAY before the answers of the streams it still serves, and
    h2 then refuses those answers ("RECV_HEADERS in state ConnectionState.CLOSED", as it refuses a body
    still to send: SEND_DATA). Only a refused SEND_HEADERS proves nothing reached the server; these were
    taken for connect errors, and a plain POST was resent (nginx, keepalive_requests 10: ~50 of 1,000
    POSTs ran twice). Each connection here answers one stream, its GOAWAY first: every POST runs once."""
    with RotatingH2Server(rotate_every=1, goaway_first=True) as srv:
        async with AsyncPerfClient(http2=True, http2_backend="httpx") as client:
            for i in range(10):
                try:
                    assert (await client.post(f"{srv.url}/x", content=f"post-{i}".encode())).status == 200
                except TransportError as exc:  # httpcore drops the answer; the POST is not resent
                    assert (exc.kind, exc.attempts) == ("closed", 1), str(exc)
        with PerfClient(http2=True) as sync_client:
            for i in range(10, 20):
                try:
                    assert sync_client.post(f"{srv.url}/x", content=f"post-{i}".encode()).status == 200
                except TransportError as exc:
                    assert (exc.kind, exc.attempts) == ("closed", 1), str(exc)
    assert sorted(srv.bodies_run.values()) == [1] * 20  # each POST ran, and ran once


def test_sync_goaway_rotation_loses_no_request() -> None:
    """The sync client over 16 threads, rotation every 200 streams: 0 failures."""
    with RotatingH2Server(rotate_every=200) as srv, PerfClient(http2=True) as client:
        failures: list[BaseException] = []

        def worker() -> None:
            for i in range(60):
                try:
                    method = "POST" if i % 3 == 0 else "GET"
                    r = client.request(
                        method, f"{srv.url}/x", content=b"a" if method == "POST" else None, idempotent=True
                    )
                    assert r.status == 200
                except BaseException as exc:
                    failures.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert failures == []
        assert srv.rotations >= 3


def test_sync_threads_sharing_an_h2_connection_never_take_the_same_stream_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The thread switch that failed the rotation test above 2 runs in 20 on a loaded box, forced: one
    thread has taken its stream id but not yet queued its HEADERS when a second asks for one. h2 counts
    an id once its HEADERS are queued, so both got the same id: the second HEADERS were refused ("SEND_HEADERS
    in state 5") and the first stream to close deleted the other's events (KeyError). Now opening a stream
    holds the connection's h2 lock until its HEADERS are queued, so the second thread waits for an id of
    its own (and the first one's wait below runs out)."""
    import h2.connection

    real = h2.connection.H2Connection.get_next_available_stream_id
    taken = threading.Event()
    second_asked = threading.Event()
    armed = [True]

    def next_id(self: Any) -> int:
        stream_id = real(self)
        if armed[0]:  # the first caller once armed: wait (bounded) for a second one to ask
            armed[0] = False
            taken.set()
            second_asked.wait(2)
        else:
            second_asked.set()
        return stream_id

    with (
        RotatingH2Server(rotate_every=1000) as srv,
        PerfClient(http2=True, retry=RetryConfig(attempts=0)) as client,
    ):
        assert client.get(f"{srv.url}/warm").status == 200  # one connection, the server's SETTINGS read
        monkeypatch.setattr(h2.connection.H2Connection, "get_next_available_stream_id", next_id)
        results: list[Any] = []

        def call() -> None:
            try:
                results.append(client.get(f"{srv.url}/x").status)
            except BaseException as exc:
                results.append(exc)

        first = threading.Thread(target=call)
        first.start()
        assert taken.wait(10)
        second = threading.Thread(target=call)
        second.start()
        first.join(10)
        second.join(10)
        assert results == [200, 200]


async def _long_stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI: a stream of up to 2000 small chunks, one every 5 ms (an LLM generating, ~10 s)."""
    if scope["type"] != "http":
        return
    await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for i in range(2000):
        await send({"type": "http.response.body", "body": b"token %d\n" % i, "more_body": True})
        await asyncio.sleep(0.005)
    await send({"type": "http.response.body", "body": b""})


async def test_streams_left_early_are_reset_so_the_connection_stays_usable_on_httpx() -> None:
    """A caller that stops reading an HTTP/2 stream (breaks out of it, as a user stopping a generation)
    must free the stream at the server too. httpcore closes it without an RST_STREAM, so it stayed open
    in h2's count: after 120 such streams (hypercorn allows 100 at once) every call to the host failed
    with "Max outbound streams is 100, 100 open" until the server finished them. The httpx carrier now
    resets the stream (CANCEL) as pyreqwest does; both keep the connection usable."""
    pytest.importorskip("hypercorn")
    with HypercornH2C(app=_long_stream) as srv:
        async with AsyncPerfClient(http2=True, http2_backend="httpx") as client:

            async def leave_early() -> bytes:
                async with client.stream("GET", f"{srv.url}/generate") as r:
                    async for chunk in r.aiter_bytes():
                        return chunk
                return b""

            for _ in range(3):
                firsts = await asyncio.gather(*(leave_early() for _ in range(40)))
                assert all(f.startswith(b"token ") for f in firsts)
                assert (await leave_early()).startswith(b"token ")  # a new stream on that connection
            assert client.pool_stats()["in_use"] == 0


def test_sync_streams_left_early_are_reset_so_the_connection_stays_usable() -> None:
    """The sync client's twin: 120 streams left after their first chunk, one after another, then one more
    on the same connection (httpcore alone: "Max outbound streams is 100, 100 open" from the 101st)."""
    pytest.importorskip("hypercorn")
    with HypercornH2C(app=_long_stream) as srv, PerfClient(http2=True) as client:
        for _ in range(121):
            with client.stream("GET", f"{srv.url}/generate") as r:
                assert next(r.iter_bytes()).startswith(b"token ")
        assert client.pool_stats()["in_use"] == 0


@pytest.mark.pyreqwest_falls_short(
    reason="pyreqwest (0.15) can't abort a request whose awaitable is cancelled; reqwest's read timeout "
    "does, but only 1 s past max(first_byte, idle), here 30 s: the server's 100 streams fill before "
    "(with an idle limit as short, they are reset: test_http_pyreqwest_abandoned.py)"
)
async def test_streams_given_up_before_their_headers_are_reset_so_the_connection_stays_usable() -> None:
    """A call given up before the response headers (our first-byte timer, the caller's cancel) must free
    its stream at the server too. httpcore forgets such a stream without an RST_STREAM: the server kept
    working on it and it stayed in h2's count, so after 100 (hypercorn's SETTINGS_MAX_CONCURRENT_STREAMS)
    every call on the connection failed with "Max outbound streams is 100, 100 open". Here /hang answers
    only a reset: 112 calls time out, 16 are cancelled, then one more call on the same connection."""
    pytest.importorskip("hypercorn")
    resets = 0

    async def hangs_until_reset(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal resets
        if scope["type"] != "http":
            return
        await read_body(receive)

        async def reset() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        if scope["path"] == "/hang":
            # at most 2.5 s: past the 7 rounds (1.4 s) whose streams must stay open to wedge the old code, and
            # within hypercorn's 3 s shutdown grace should a carrier fail the test (a stream never reset)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reset(), 2.5)
                resets += 1
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if scope["path"] == "/stall":  # one chunk, then nothing until reset (2.5 s)
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reset(), 2.5)
                resets += 1
            return
        if scope["path"] == "/trickle":  # a body that never ends: a chunk every 20 ms until reset (2 s)
            for _ in range(100):
                await send({"type": "http.response.body", "body": b"x", "more_body": True})
                await asyncio.sleep(0.02)
        await send({"type": "http.response.body", "body": b"ok"})

    with HypercornH2C(app=hangs_until_reset) as srv:
        async with AsyncPerfClient(
            http2=True,
            http2_backend="httpx",
            timeout=TimeoutConfig(first_byte=0.2),
            retry=RetryConfig(attempts=0),
            breaker=BreakerConfig(enabled=False),
        ) as client:
            for _ in range(7):  # 16 at a time: the httpx carrier's streams a host
                timed_out = await asyncio.gather(
                    *(client.get(f"{srv.url}/hang") for _ in range(16)), return_exceptions=True
                )
                assert all(isinstance(e, TransportError) and e.kind == "first_byte" for e in timed_out)
            calls = [asyncio.create_task(client.get(f"{srv.url}/hang")) for _ in range(16)]
            while client.pool_stats()["in_use"] < 16:  # all 16 sent (their slots taken)
                await asyncio.sleep(0.01)
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            assert (await client.get(f"{srv.url}/ok")).status == 200
            # the same for a body given up half read (the call's deadline)
            for _ in range(7):
                cut = await asyncio.gather(
                    *(client.get(f"{srv.url}/trickle", deadline=0.2) for _ in range(16)),
                    return_exceptions=True,
                )
                assert all(isinstance(e, DeadlineExceeded) for e in cut), cut
            assert (await client.get(f"{srv.url}/ok")).status == 200
            assert client.pool_stats()["in_use"] == 0
        # and a stream cut by the idle timer while httpcore's iterator waits for its next chunk
        async with AsyncPerfClient(
            http2=True,
            http2_backend="httpx",
            timeout=TimeoutConfig(idle=0.2),
            breaker=BreakerConfig(enabled=False),
        ) as client:

            async def stalls() -> str:
                async with client.stream("GET", f"{srv.url}/stall") as r:
                    try:
                        async for _ in r.aiter_bytes():
                            pass
                    except TransportError as exc:
                        return exc.kind
                return "ended"

            for _ in range(7):
                assert set(await asyncio.gather(*(stalls() for _ in range(16)))) == {"idle"}
            assert (await client.get(f"{srv.url}/ok")).status == 200
    assert resets >= 7 * 16  # the server was told of each stream timed out (and of the cancels it got)
