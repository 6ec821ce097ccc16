"""Body readers for AsyncPerfClient's streamed responses, and small helpers its backends share.

A reader owns the connection slot (lease) of its response: it gives both back exactly once, when the body
ends, breaks, times out, or the caller closes the stream, without awaiting the slot release, so cleanup
survives cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from infra.http._body import Body
from infra.http._errors import HTTPError
from infra.http._lease import AsyncLease
from infra.http._routing import aclose_reset
from infra.http._timer import PhaseTimer

__all__ = ["AiohttpBody", "HttpxBody", "earliest"]

_monotonic = time.monotonic


class AiohttpBody(Body):
    """Reads an aiohttp response body chunk by chunk under the idle timeout and the call's deadline."""

    __slots__ = ()

    async def next_chunk(self) -> bytes:
        if self.done:
            return b""
        content = self._resp.content
        # Data already buffered (the first chunk often arrives with the headers): no wait, so no timer.
        # The deadline still holds: buffered data past it is not handed out.
        if not content.is_eof() and (self.deadline_at is None or _monotonic() < self.deadline_at):
            try:
                chunk = content.read_nowait()
            except Exception:  # a broken stream: the awaited read below raises it properly
                chunk = b""
            if chunk:
                return chunk  # type: ignore[no-any-return]
        when = earliest(self.deadline_at, _monotonic() + self._idle if self._idle is not None else None)
        try:
            if when is None:
                chunk = await self._resp.content.readany()
            else:
                async with PhaseTimer(when):
                    chunk = await self._resp.content.readany()
        except TimeoutError as exc:
            self.close()
            raise self.ran_out(self.deadline_at is not None and when == self.deadline_at) from exc
        except BaseException as exc:
            self.close()
            if isinstance(exc, Exception) and not isinstance(exc, HTTPError):
                raise self.broke(exc) from exc
            raise
        if not chunk:
            self.done = True
            self.close()
        return chunk  # type: ignore[no-any-return]

    def close(self) -> None:
        """Give the connection back (kept alive when the body was read to the end), then the slot."""
        if not self._lease.released:
            if self.done:
                self._resp.release()
            else:
                self._resp.close()
            self._lease.release()

    async def aclose(self) -> None:
        self.close()


class HttpxBody(Body):
    """Body reader for an httpx (HTTP/2) streamed response."""

    __slots__ = ("_iter",)

    def __init__(
        self, resp: Any, lease: AsyncLease, idle: float | None, deadline_at: float | None, origin: str
    ) -> None:
        super().__init__(resp, lease, idle, deadline_at, origin)
        self._iter = resp.aiter_bytes()

    async def next_chunk(self) -> bytes:
        if self.done:
            return b""
        when = earliest(self.deadline_at, _monotonic() + self._idle if self._idle is not None else None)
        try:
            async with PhaseTimer(when):
                try:
                    chunk = await self._iter.__anext__()
                except StopAsyncIteration:
                    chunk = b""
        except TimeoutError as exc:
            await self.aclose()
            raise self.ran_out(self.deadline_at is not None and when == self.deadline_at) from exc
        except Exception as exc:
            await self.aclose()
            raise self.broke(exc) from exc
        if not chunk:
            self.done = True
            await self.aclose()
        return chunk  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        if not self._lease.released:
            self._lease.release()  # slot first: aclose below may be cancelled
            with contextlib.suppress(Exception):
                # left before its end (broken off, timed out, cancelled): httpcore's close alone would
                # leave its HTTP/2 stream open at the server and in h2's count (_routing._reset_orphans)
                await asyncio.shield(self._resp.aclose() if self.done else aclose_reset(self._resp))


def earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a <= b else b
