"""A recording HTTP/1.1 server on 127.0.0.1 for the request-fidelity tests: it keeps every request as the
server saw it (method, raw target, raw headers, body) and can answer a key's first tries with 503.

``GET /count`` is not a route: read ``server.seen(key)`` from the test's thread instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Seen:
    """One request as it arrived."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]  # (lower-cased name, value decoded as UTF-8), in arrival order
    body: bytes

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.body).hexdigest()[:16]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


class Recorder:
    """``with Recorder() as srv``: ``srv.url``; ``/r/{key}`` (or any path below it) records a request under
    its key; ``?fail=N`` answers the key's first N tries 503 (Retry-After: 0), then 200 with the body's
    length and hash."""

    def __init__(self) -> None:
        self.requests: dict[str, list[Seen]] = {}
        self._lock = threading.Lock()

    def seen(self, key: str) -> list[Seen]:
        with self._lock:
            return list(self.requests.get(key, ()))

    def __enter__(self) -> Recorder:
        from aiohttp import web

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def handle(request: Any) -> Any:
            body = await request.read()
            key = request.match_info["key"]
            headers = tuple(
                (k.decode().lower(), v.decode("utf-8", "replace")) for k, v in request.raw_headers
            )
            seen = Seen(request.method, request.raw_path, headers, body)
            with self._lock:
                tries = self.requests.setdefault(key, [])
                tries.append(seen)
                n = len(tries)
            if n <= int(request.query.get("fail", "0")):
                return web.Response(status=503, text="busy", headers={"Retry-After": "0"})
            return web.json_response({"len": len(body), "sha": seen.sha, "try": n})

        async def start() -> Any:
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/r/{key}", handle)
            app.router.add_route("*", "/r/{key}/{tail:.*}", handle)  # any path below the key
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            return runner

        self._runner = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
