"""FaultServer: an aiohttp server on 127.0.0.1 that injects HTTP faults, for tests and benchmarks.

It runs its own event loop in a daemon thread, so sync code (PerfClient, benchmarks of sync clients) and
async code (on any loop) can both call it, and a client stalled by a fault never stalls the server.
Counters (``hits``, ``gauge``: requests in flight, ``connections``: TCP connections open, idle keep-alive
ones included) are read from the calling thread.

Routes (``{key}`` names an independent counter, so tests don't interfere):

==================================  ========================================================================
``/ok``                             200; ``size`` body bytes, ``delay`` seconds before answering
``/status/{code}``                  that status after ``delay`` seconds; ``retry_after`` / ``retry_after_ms``
                                    / ``set_cookie`` headers
``/fail/{key}``                     the first ``n`` hits get ``code`` (503), optional Retry-After; then 200
                                    (``delay`` seconds before answering)
``/flaky``                          every ``every``-th hit (10) gets ``code`` (503) with ``retry_after`` (0)
``/reset-before-headers/{key}``     the first ``n`` hits (all) are reset (TCP RST) before any response byte
                                    (after ``delay`` seconds)
``/reset-after-headers/{key}``      the first ``n`` hits (all) get headers, part of the body, then a reset
``/slow-first-byte``                waits ``delay`` seconds, then 200
``/truncated``                      promises Content-Length 1000, sends 10 bytes and closes
``/stall``                          streams ``chunks`` lines, then stalls ``stall`` seconds before the end
``/stream``                         streams ``chunks`` lines of ``size`` bytes, ``interval`` seconds apart
``/echo/{key}``                     echoes method, body and Idempotency-Key as JSON
``/redirect``                       302 to ``to`` (/ok)
``/headers``                        the request headers as JSON (lower-cased names)
``/hold/{key}``                     held until ``server.release(key)``, then 200 (arrivals: ``hits``)
==================================  ========================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import threading
from collections import Counter
from typing import Any

from ._serve import serve_until

__all__ = ["ConcurrencyGauge", "ConnectionGauge", "FaultServer"]


class ConcurrencyGauge:
    """Counts requests in flight (now and at peak); share one across servers to see the total."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.now += 1
            if self.now > self.peak:
                self.peak = self.now

    def leave(self) -> None:
        with self._lock:
            self.now -= 1

    def reset(self) -> None:
        with self._lock:
            self.peak = self.now


def _socket_open(transport: Any) -> bool:
    """Whether the client still holds this connection open: no FIN or RST waits in its receive queue.

    Peeks (MSG_PEEK, non-blocking) on a duplicate of the socket, so the server's own reads are untouched.
    """
    if transport.is_closing():
        return False
    sock = transport.get_extra_info("socket")
    fd = sock.fileno() if sock is not None else -1
    if fd < 0:
        return False
    try:
        dup = socket.socket(fileno=os.dup(fd))
    except OSError:
        return False
    try:
        return dup.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True  # open, nothing to read: an idle keep-alive connection
    except OSError:
        return False  # reset
    finally:
        dup.close()


class ConnectionGauge:
    """Counts TCP connections open to one or more servers (share one across servers to see the total).

    Counted at the server, exactly: when a new connection's first request arrives, every connection seen
    before is checked for a FIN or RST the client already sent (a peek), so a connection the client
    closed before opening the new one never counts, and an idle keep-alive connection always does.
    ``opened``: connections ever seen; ``peak``: most open at once; ``open_now()``: open at this moment.
    """

    def __init__(self) -> None:
        self.opened = 0
        self.peak = 0
        self._live: dict[int, Any] = {}
        self._lock = threading.Lock()

    def _prune(self) -> None:
        for key, transport in list(self._live.items()):
            if not _socket_open(transport):
                del self._live[key]

    def seen(self, transport: Any) -> None:
        if transport is None:
            return
        key = id(transport)
        with self._lock:
            if self._live.get(key) is transport:
                return
            self._prune()
            self._live[key] = transport
            self.opened += 1
            if len(self._live) > self.peak:
                self.peak = len(self._live)

    def open_now(self) -> int:
        with self._lock:
            self._prune()
            return len(self._live)

    def reset(self) -> None:
        with self._lock:
            self._prune()
            self.opened = 0
            self.peak = len(self._live)


def _reset(request: Any) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0), the way a crashed upstream looks."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class FaultServer:
    """``with FaultServer() as server: client.get(server.url + "/flaky?every=10")``."""

    def __init__(
        self,
        *,
        gauge: ConcurrencyGauge | None = None,
        total_gauge: ConcurrencyGauge | None = None,
        connections: ConnectionGauge | None = None,
        total_connections: ConnectionGauge | None = None,
    ) -> None:
        self.gauge = gauge or ConcurrencyGauge()
        self.total_gauge = total_gauge
        self.connections = connections or ConnectionGauge()
        self.total_connections = total_connections
        self.hits: Counter[str] = Counter()
        self.requests: dict[str, list[dict[str, Any]]] = {}
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._holds: dict[str, asyncio.Event] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        """The ``origin`` label the HTTP client's metrics give this server: its base URL (it has no path)."""
        return self.url

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> FaultServer:
        self._thread = threading.Thread(target=self._serve, name="fault-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("FaultServer did not start within 10s")
        if self._error is not None:
            raise RuntimeError(f"FaultServer failed to start: {self._error!r}")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._thread is not None:
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                fut.result(10)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            # handlers still sleeping on a slow route whose client gave up: cancel them here, or they are
            # reported as "Task was destroyed but it is pending" when the interpreter exits
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _startup(self) -> None:
        from aiohttp import web

        @web.middleware
        async def count(request: Any, handler: Any) -> Any:
            return await self._wrapped(request, handler)

        app = web.Application(middlewares=[count])
        r = app.router
        r.add_route("*", "/ok", self._ok)
        r.add_route("*", "/status/{code}", self._status)
        r.add_route("*", "/fail/{key}", self._fail)
        r.add_route("*", "/flaky", self._flaky)
        r.add_route("*", "/reset-before-headers/{key}", self._reset_before)
        r.add_route("*", "/reset-after-headers/{key}", self._reset_after)
        r.add_get("/slow-first-byte", self._slow_first_byte)
        r.add_get("/truncated", self._truncated)
        r.add_get("/stall", self._stall)
        r.add_get("/stream", self._stream)
        r.add_route("*", "/echo/{key}", self._echo)
        r.add_route("*", "/redirect", self._redirect)
        r.add_route("*", "/headers", self._headers)
        r.add_route("*", "/hold/{key}", self._hold)
        # access_log=None: a log line per request would dominate the benchmarks.
        # shutdown_timeout: stop() waits for in-flight handlers this long, not aiohttp's default 60 s
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- helpers -----------------------------------------------------------------------------------------

    async def _wrapped(self, request: Any, handler: Any) -> Any:
        self.connections.seen(request.transport)
        if self.total_connections is not None:
            self.total_connections.seen(request.transport)
        self.gauge.enter()
        if self.total_gauge is not None:
            self.total_gauge.enter()
        try:
            return await handler(request)
        finally:
            self.gauge.leave()
            if self.total_gauge is not None:
                self.total_gauge.leave()

    def _hit(self, key: str) -> int:
        self.hits[key] += 1
        return self.hits[key]

    @staticmethod
    def _f(request: Any, name: str, default: float) -> float:
        return float(request.query.get(name, default))

    @staticmethod
    async def _delay(request: Any) -> None:
        delay = float(request.query.get("delay", 0))
        if delay:
            await asyncio.sleep(delay)

    @staticmethod
    def _retry_headers(request: Any) -> dict[str, str]:
        out = {}
        if "set_cookie" in request.query:
            out["Set-Cookie"] = request.query["set_cookie"]
        if "retry_after" in request.query:
            out["Retry-After"] = request.query["retry_after"]
        if "retry_after_ms" in request.query:
            out["retry-after-ms"] = request.query["retry_after_ms"]
        return out

    def release(self, key: str) -> None:
        """Answer every request held at ``/hold/{key}``, and from now on answer that key at once."""
        loop = self._loop
        assert loop is not None, "server not started"
        loop.call_soon_threadsafe(lambda: self._hold_event(key).set())

    def _hold_event(self, key: str) -> asyncio.Event:
        event = self._holds.get(key)
        if event is None:
            event = self._holds[key] = asyncio.Event()
        return event

    # -- routes ------------------------------------------------------------------------------------------

    async def _hold(self, request: Any) -> Any:
        """Held until the test calls ``release(key)`` (ordering by the test, not by sleeps); ``hits``
        counts arrivals as ``hold/{key}``."""
        from aiohttp import web

        key = request.match_info["key"]
        self._hit(f"hold/{key}")
        await self._hold_event(key).wait()
        return web.Response(text="held")

    async def _ok(self, request: Any) -> Any:
        from aiohttp import web

        self._hit("ok")
        await request.read()
        delay = self._f(request, "delay", 0)
        if delay:
            await asyncio.sleep(delay)
        return web.Response(body=b"x" * int(self._f(request, "size", 2)), content_type="text/plain")

    async def _status(self, request: Any) -> Any:
        from aiohttp import web

        code = int(request.match_info["code"])
        self._hit(f"status/{code}")
        await self._delay(request)
        return web.Response(status=code, text=str(code), headers=self._retry_headers(request))

    async def _fail(self, request: Any) -> Any:
        from aiohttp import web

        key = "fail/" + request.match_info["key"]
        n = self._hit(key)
        await request.read()
        await self._delay(request)
        if n <= int(self._f(request, "n", 1)):
            code = int(self._f(request, "code", 503))
            return web.Response(status=code, text="fail", headers=self._retry_headers(request))
        return web.Response(text=str(n))

    async def _flaky(self, request: Any) -> Any:
        from aiohttp import web

        n = self._hit("flaky")
        if n % int(self._f(request, "every", 10)) == 0:
            headers = {"Retry-After": request.query.get("retry_after", "0")}
            return web.Response(status=int(self._f(request, "code", 503)), text="flaky", headers=headers)
        return web.Response(text="ok")

    async def _reset_before(self, request: Any) -> Any:
        from aiohttp import web

        key = "reset-before-headers/" + request.match_info["key"]
        n = self._hit(key)
        await request.read()
        await self._delay(request)
        self._log(key, request, b"")
        if n <= int(self._f(request, "n", 1e9)):
            _reset(request)
            await asyncio.sleep(0.05)  # let the reset land before aiohttp notices the closed transport
            raise asyncio.CancelledError
        return web.Response(text=str(n))

    async def _reset_after(self, request: Any) -> Any:
        from aiohttp import web

        key = "reset-after-headers/" + request.match_info["key"]
        n = self._hit(key)
        await request.read()
        if n <= int(self._f(request, "n", 1e9)):
            resp = web.StreamResponse(headers={"Content-Length": "1000"})
            await resp.prepare(request)
            await resp.write(b"partial...")
            await asyncio.sleep(0.01)
            _reset(request)
            await asyncio.sleep(0.05)
            raise asyncio.CancelledError
        return web.Response(text=str(n))

    async def _slow_first_byte(self, request: Any) -> Any:
        from aiohttp import web

        self._hit("slow-first-byte")
        await asyncio.sleep(self._f(request, "delay", 1.0))
        return web.Response(text="late")

    async def _truncated(self, request: Any) -> Any:
        from aiohttp import web

        self._hit("truncated")
        resp = web.StreamResponse(headers={"Content-Length": "1000"})
        await resp.prepare(request)
        await resp.write(b"0123456789")
        await asyncio.sleep(0.01)
        transport = request.transport
        if transport is not None:
            transport.close()
        await asyncio.sleep(0.05)
        raise asyncio.CancelledError

    async def _stall(self, request: Any) -> Any:
        from aiohttp import web

        self._hit("stall")
        resp = web.StreamResponse()
        await resp.prepare(request)
        try:
            for i in range(int(self._f(request, "chunks", 1))):
                await resp.write(f"line {i}\n".encode())
            await asyncio.sleep(self._f(request, "stall", 5.0))
            await resp.write_eof()
        except ConnectionError:  # the client gave up on the stall: expected
            pass
        return resp

    async def _stream(self, request: Any) -> Any:
        from aiohttp import web

        self._hit("stream")
        resp = web.StreamResponse()
        resp.content_type = "text/plain"
        await resp.prepare(request)
        interval = self._f(request, "interval", 0)
        pad = b"x" * int(self._f(request, "size", 0))
        try:
            for i in range(int(self._f(request, "chunks", 3))):
                if interval:
                    await asyncio.sleep(interval)
                await resp.write(f"line {i}".encode() + pad + b"\n")
            await resp.write_eof()
        except ConnectionError:  # the client closed the stream early: expected
            pass
        return resp

    async def _echo(self, request: Any) -> Any:
        from aiohttp import web

        key = "echo/" + request.match_info["key"]
        n = self._hit(key)
        body = await request.read()
        self._log(key, request, body)
        return web.Response(
            text=json.dumps(
                {
                    "n": n,
                    "method": request.method,
                    "body": body.decode("utf-8", "replace"),
                    "idempotency_key": request.headers.get("Idempotency-Key"),
                }
            ),
            content_type="application/json",
        )

    async def _redirect(self, request: Any) -> Any:
        from aiohttp import web

        self._hit("redirect")
        return web.Response(status=302, headers={"Location": request.query.get("to", "/ok")})

    async def _headers(self, request: Any) -> Any:
        from aiohttp import web

        self._hit("headers")
        return web.json_response({k.lower(): v for k, v in request.headers.items()})

    def _log(self, key: str, request: Any, body: bytes) -> None:
        self.requests.setdefault(key, []).append(
            {
                "method": request.method,
                "idempotency_key": request.headers.get("Idempotency-Key"),
                "body": body,
            }
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.testing.fault_server``: serve in this process (prints ``PORT <n>``) until stdin
    closes. Benchmarks run the server this way so it doesn't share the client's GIL."""
    import sys

    server = FaultServer().start()
    print(f"PORT {server.port}", flush=True)
    return serve_until(server, sys.stdin.read)


if __name__ == "__main__":
    raise SystemExit(main())
