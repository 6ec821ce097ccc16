"""Fixtures for the hot-path tests: a real ``websockets`` server on 127.0.0.1 (OS-chosen port)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class WSServer:
    """What the test server saw: every message per connection, in order."""

    url: str = ""
    connections: list[list[str | bytes]] = field(default_factory=list)
    handler: Callable[[Any, list[str | bytes]], Awaitable[None]] | None = None
    got_message: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def messages(self) -> list[str | bytes]:
        return [m for conn in self.connections for m in conn]

    async def wait_for(self, n: int, timeout: float = 5.0) -> None:
        """Wait (bounded: a hang guard, not a timing assertion) until ``n`` messages arrived."""

        async def loop() -> None:
            while len(self.messages) < n:
                self.got_message.clear()
                await self.got_message.wait()

        await asyncio.wait_for(loop(), timeout)


async def _record(ws: Any, seen: list[str | bytes], server: WSServer) -> None:
    async for message in ws:
        seen.append(message)
        server.got_message.set()


@pytest.fixture
async def ws_server() -> AsyncIterator[WSServer]:
    from websockets.asyncio.server import serve

    state = WSServer()

    async def handler(ws: Any) -> None:
        seen: list[str | bytes] = []
        state.connections.append(seen)
        if state.handler is not None:
            await state.handler(ws, seen)
        else:
            await _record(ws, seen, state)

    async with serve(handler, "127.0.0.1", 0, max_queue=1, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        state.url = f"ws://127.0.0.1:{port}/stt?token=secret"
        yield state
