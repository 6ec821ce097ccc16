"""The pyreqwest carrier frees what a call gave up on before its headers (real hypercorn server: h2c, and
HTTP/1.1 for ``backend="pyreqwest"``).

pyreqwest (0.15) runs each request as a task of its own runtime, and a cancel of its awaitable only drops
that task's JoinHandle: the request ran on until the server answered, holding its HTTP/2 stream. After the
server's SETTINGS_MAX_CONCURRENT_STREAMS (hypercorn: 100) such streams every new call queued in hyper behind
them and timed out too. Each request now carries reqwest's own limits, past ours (``_reqwest.MARGIN``).
Each test names the pyreqwest carrier itself, so it runs in the default run and with
``--http-backend pyreqwest`` alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from http_h2_servers import HypercornH2C, read_body

from infra.http import (
    AsyncPerfClient,
    BreakerConfig,
    DeadlineExceeded,
    RetryConfig,
    TimeoutConfig,
    TransportError,
)

pytest.importorskip("pyreqwest")
pytest.importorskip("hypercorn")

# Generous on a loaded 2-core box: a stream given up is reset MARGIN (1 s) past our limit (0.2 s), so all
# are reset within ~1.5 s of the last call; 15 s is ten times that.
PATIENCE = 15.0


class Hangs:
    """An ASGI app: ``/hang`` never answers; its handler waits for the client's reset (http.disconnect) and
    counts it (``hits`` opened, ``resets`` seen), or for ``release()``, then answers 200. ``/ok`` answers."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.hits = 0
        self.resets = 0
        self.released: asyncio.Event | None = None  # made on the server's loop, on its first /hang
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_body(receive)
        if scope["path"] == "/hang":
            if self.released is None:
                self.released, self.loop = asyncio.Event(), asyncio.get_running_loop()
            with self.cond:
                self.hits += 1
                self.cond.notify_all()
            if await self._reset_or_released(receive, self.released):
                with self.cond:
                    self.resets += 1
                    self.cond.notify_all()
                return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    @staticmethod
    async def _reset_or_released(receive: Any, released: asyncio.Event) -> bool:
        """True when the client reset the stream, False when released. At most 30 s: a carrier that never
        resets fails the test's wait first, and hypercorn's shutdown cancels what is left."""

        async def reset() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        waits = [asyncio.ensure_future(reset()), asyncio.ensure_future(released.wait())]
        try:
            done, _ = await asyncio.wait(waits, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return waits[0] in done

    def release(self) -> None:
        """Let every /hang answer (also how a failed test lets the server shut down cleanly)."""
        if self.loop is not None and self.released is not None:
            self.loop.call_soon_threadsafe(self.released.set)

    async def until(self, done: Callable[[Hangs], bool], patience: float = PATIENCE) -> bool:
        """Wait (in a thread, on the condition the server notifies) until ``done(self)``, at most
        ``patience`` seconds."""

        def wait() -> bool:
            with self.cond:
                return self.cond.wait_for(lambda: done(self), patience)

        return await asyncio.to_thread(wait)


@contextlib.contextmanager
def _serving(app: Any) -> Iterator[HypercornH2C]:
    """``app`` served; its /hang handlers released on the way out, pass or fail."""
    with HypercornH2C(app=app) as srv:
        try:
            yield srv
        finally:
            if isinstance(app, Hangs):
                app.release()


def _client(**timeout: float) -> AsyncPerfClient:
    return AsyncPerfClient(
        http2=True,
        http2_backend="pyreqwest",
        timeout=TimeoutConfig(**timeout),
        retry=RetryConfig(attempts=0),
        breaker=BreakerConfig(enabled=False),
    )


async def test_calls_given_up_before_their_headers_are_reset_so_the_connection_stays_usable() -> None:
    """16 calls cancelled while they wait for their headers, then 112 first-byte timeouts (0.2 s), all on
    one connection: every stream the server opened is reset soon after (reqwest's read timeout, 1 s past
    ours), and a normal call then goes through. Before, none was ever reset and, past the server's 100,
    the next call queued behind them and timed out."""
    app = Hangs()
    with _serving(app) as srv:
        async with _client(first_byte=0.2, idle=0.2) as client:
            assert client.pool_stats().get("reqwest_active", 0) == 0
            calls = [asyncio.create_task(client.get(f"{srv.url}/hang")) for _ in range(16)]
            assert await app.until(lambda a: a.hits == 16)  # all 16 at the server: cancel them mid-wait
            for call in calls:
                call.cancel()
            cancelled = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(c, asyncio.CancelledError) for c in cancelled), cancelled
            for _ in range(7):
                timed_out = await asyncio.gather(
                    *(client.get(f"{srv.url}/hang") for _ in range(16)), return_exceptions=True
                )
                # what a caller sees is our first-byte timeout, never reqwest's own error
                assert all(isinstance(e, TransportError) and e.kind == "first_byte" for e in timed_out), {
                    repr(e) for e in timed_out
                }
            # streams queued in hyper behind the server's 100 may never have reached it: those it opened
            assert await app.until(lambda a: a.hits >= 100 and a.resets == a.hits), (app.hits, app.resets)
            assert (await client.get(f"{srv.url}/ok")).status == 200
            assert client.pool_stats()["in_use"] == 0
            assert client.pool_stats()["reqwest_active"] == 0


async def test_http11_calls_given_up_before_their_headers_free_their_connections() -> None:
    """The same over HTTP/1.1 (``backend="pyreqwest"``): a request given up held its connection and its
    permit of pyreqwest's own connection limit (``max_connections``, 8 here) until the server answered, so
    after 8 every new call waited in pyreqwest for a permit and timed out. 8 cancels, then 8 first-byte
    timeouts (waiting for those permits: they reach the server when the first 8 are aborted, ~1.2 s, and
    are aborted ~1.2 s later), then a normal call goes through."""
    app = Hangs()
    with _serving(app) as srv:
        async with AsyncPerfClient(
            backend="pyreqwest",
            max_connections=8,
            max_per_host=8,
            timeout=TimeoutConfig(first_byte=0.2, idle=0.2),
            retry=RetryConfig(attempts=0),
            breaker=BreakerConfig(enabled=False),
        ) as client:
            calls = [asyncio.create_task(client.get(f"{srv.url}/hang")) for _ in range(8)]
            assert await app.until(lambda a: a.hits == 8)
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            timed_out = await asyncio.gather(
                *(client.get(f"{srv.url}/hang") for _ in range(8)), return_exceptions=True
            )
            assert all(isinstance(e, TransportError) and e.kind == "first_byte" for e in timed_out), {
                repr(e) for e in timed_out
            }
            # two generations of ~1.2 s each: 30 s is ten times that and more
            assert await app.until(lambda a: a.hits == 16 and a.resets == 16, 30), (app.hits, app.resets)
            assert (await client.get(f"{srv.url}/ok")).status == 200


async def test_a_calls_own_deadline_aborts_its_request_too() -> None:
    """The first-byte and idle limits are long (30 s), each call's own deadline short (0.2 s): reqwest's
    total timeout follows that deadline (1 s past it), not the configured 60 s, so each stream is reset."""
    app = Hangs()
    with _serving(app) as srv:
        async with _client() as client:
            cut = await asyncio.gather(
                *(client.get(f"{srv.url}/hang", deadline=0.2) for _ in range(16)), return_exceptions=True
            )
            assert all(isinstance(e, DeadlineExceeded) for e in cut), {repr(e) for e in cut}
            assert await app.until(lambda a: a.hits == 16 and a.resets == 16), (app.hits, app.resets)
            assert (await client.get(f"{srv.url}/ok")).status == 200


async def test_a_stream_on_the_configured_deadline_outlives_it() -> None:
    """A stream on the configured deadline runs on the idle limit alone once its headers came
    (``drop_deadline``): reqwest must not be given that deadline as its total timeout. Here the body
    trickles for ~2 s, past the 0.3 s deadline and its 1 s margin."""

    async def trickle(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(40):  # pacing only: a chunk every 50 ms, well inside the 0.5 s idle limit
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"end"})

    with HypercornH2C(app=trickle) as srv:
        async with _client(total=0.3, idle=0.5) as client, client.stream("GET", f"{srv.url}/trickle") as r:
            body = b"".join([chunk async for chunk in r.aiter_bytes()])
    assert body == b"x" * 40 + b"end"


async def test_reqwest_active_counts_calls_waiting_for_their_headers() -> None:
    """``pool_stats()["reqwest_active"]`` is the requests holding a connection (here: an HTTP/2 stream), as
    aiohttp_acquired and httpx_active count theirs: waiting for the headers included (it said 0)."""
    app = Hangs()
    with _serving(app) as srv:
        async with _client() as client:
            calls = [asyncio.create_task(client.get(f"{srv.url}/hang")) for _ in range(20)]
            try:
                assert await app.until(lambda a: a.hits == 20)
                waiting = client.pool_stats()["reqwest_active"]
            finally:
                app.release()
                answers = await asyncio.gather(*calls, return_exceptions=True)
            assert waiting == 20
            assert {getattr(r, "status", r) for r in answers} == {200}
            assert client.pool_stats()["reqwest_active"] == 0


def test_reqwests_total_timeout_lands_just_past_the_deadline() -> None:
    """A request's reqwest limit is at least MARGIN past the call's deadline (our timer fires first) and
    at most a quarter second more (quarter seconds: one timedelta a value, reused)."""
    from infra.http._reqwest import MARGIN, total_timeout

    for left in (-5.0, 0.0, 0.2, 1.0, 29.5, 60.0):
        before = time.monotonic()
        limit = total_timeout(before + left).total_seconds()
        after = time.monotonic()
        assert max(left, 0.0) - (after - before) + MARGIN <= limit <= max(left, 0.0) + MARGIN + 0.25
    now = time.monotonic()
    assert total_timeout(now + 10.1) is total_timeout(now + 10.2)
