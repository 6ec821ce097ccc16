"""A bounded, backpressured sender for streamed audio over a WebSocket (``websockets`` library).

The pipeline's microphone loop must never wait on the network for long, and a dead connection
must not raise into it (seed 000, Task 2: on a failed send, log, disconnect cleanly, carry on).
``AudioStreamSender`` puts messages on a bounded queue that one writer task drains into the
socket; what happens when the queue is full is a policy:

- ``"block"``: ``send`` waits for room (up to ``block_timeout``, then ``BackpressureError``);
- ``"drop_oldest"``: the oldest queued message is dropped (live audio: the newest matters most);
- ``"raise"``: ``send`` raises ``BackpressureError`` at once.

When a send fails, the sender logs one warning, closes the socket, drops what was queued and
reports ``connected == False``; later ``send`` calls return False instead of raising. An
``on_disconnect(exc)`` hook (sync or async) may return True to reconnect through the same
connect factory.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from infra.config._switch import part_metrics
from infra.errors import BackpressureError
from infra.hotpath.frames import AudioFrameTemplate

__all__ = ["AudioStreamSender", "Overflow", "WebSocketLike"]

log = logging.getLogger("infra.hotpath.sender")

Overflow = Literal["block", "drop_oldest", "raise"]
_OVERFLOWS = ("block", "drop_oldest", "raise")


class WebSocketLike(Protocol):
    """What the sender needs from a connection (``websockets.asyncio.client.ClientConnection``)."""

    async def send(self, message: str | bytes, /, *, text: bool | None = None) -> None: ...

    async def close(self) -> None: ...


ConnectFactory = Callable[[], Awaitable[WebSocketLike]]
DisconnectHook = Callable[[BaseException], "bool | Awaitable[bool | None] | None"]


def _origin(url: str) -> str:
    """``ws://user:pw@host:8080/path?token=x`` → ``ws://host:8080`` (no secrets in labels)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme in ("wss", "https") else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


class AudioStreamSender:
    """Queue messages for one WebSocket and send them from a single writer task.

    Give either ``url`` (connected with ``websockets.asyncio.client.connect(url, **connect_kwargs)``)
    or ``connect``, an async factory returning a connection. ``template`` enables ``send_audio``.
    ``close_timeout`` bounds a clean close; past it the transport is aborted.
    Use it from one event loop; ``async with`` connects and closes.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        connect: ConnectFactory | None = None,
        template: AudioFrameTemplate | None = None,
        max_queue: int = 64,
        overflow: Overflow = "block",
        block_timeout: float | None = None,
        on_disconnect: DisconnectHook | None = None,
        name: str | None = None,
        connect_kwargs: Mapping[str, object] | None = None,
        close_timeout: float = 1.0,
    ) -> None:
        if (url is None) == (connect is None):
            raise ValueError("AudioStreamSender needs exactly one of url= or connect=")
        if overflow not in _OVERFLOWS:
            raise ValueError(f"overflow must be one of {_OVERFLOWS}, not {overflow!r}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, not {max_queue!r}")
        if url is not None:
            # websockets checks these keywords itself (a TypeError names a bad one)
            kwargs: dict[str, Any] = dict(connect_kwargs or {})
            target = url

            async def _connect() -> WebSocketLike:
                from websockets.asyncio.client import connect as ws_connect

                return await ws_connect(target, **kwargs)

            connect = _connect
        assert connect is not None
        self._connect = connect
        self.template = template
        self.max_queue = max_queue
        self.overflow: Overflow = overflow
        self.block_timeout = block_timeout
        self.on_disconnect = on_disconnect
        self.close_timeout = close_timeout
        self.name = name or (_origin(url) if url else "default")
        self._ws: WebSocketLike | None = None
        # (message, text): text=True sends bytes as a text frame (UTF-8 JSON from a bytes template).
        self._queue: deque[tuple[str | bytes, bool]] = deque()
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        # Plain counters for callers and tests; the same events go to metrics.
        self.sent = 0
        self.dropped = 0
        self.failures = 0
        self.last_error: BaseException | None = None
        reg = part_metrics()  # records nothing while metrics.enabled is false; the plain counters count
        self._m_latency = reg.histogram(
            "infra_ws_send_duration_seconds",
            "Time to hand one message to the WebSocket.",
            labelnames=("stream",),
        ).labels(self.name)
        self._m_depth = reg.gauge(
            "infra_ws_send_queue_depth", "Messages waiting in the send queue.", labelnames=("stream",)
        ).labels(self.name)
        dropped = reg.counter(
            "infra_ws_send_dropped_total",
            "Messages dropped before sending, by reason.",
            labelnames=("stream", "reason"),
        )
        self._m_drop_overflow = dropped.labels(self.name, "overflow")
        self._m_drop_disconnected = dropped.labels(self.name, "disconnected")
        self._m_failures = reg.counter(
            "infra_ws_send_failures_total",
            "Sends that failed and disconnected the stream.",
            labelnames=("stream",),
        ).labels(self.name)

    # -- connection ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a connection is open and the writer runs."""
        return self._ws is not None

    @property
    def queue_depth(self) -> int:
        """Messages waiting to be sent."""
        return len(self._queue)

    async def connect(self) -> None:
        """Open the connection (if not open) and start the writer."""
        if self._ws is not None:
            return
        self._closing = False
        self._ws = await self._connect()
        self._space.set()
        self._writer = asyncio.get_running_loop().create_task(self._write_loop(self._ws))

    async def reconnect(self) -> None:
        """Drop the current connection (if any) and open a fresh one."""
        await self._teardown(drop_reason="disconnected")
        await self.connect()

    async def close(self, *, drain: bool = True) -> None:
        """Send what is queued (``drain=True``), then close the connection cleanly."""
        if drain and self._ws is not None:
            await self.flush()
        self._closing = True
        await self._teardown(drop_reason="disconnected")

    async def __aenter__(self) -> AudioStreamSender:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close(drain=exc[0] is None)

    # -- sending ---------------------------------------------------------------------------------

    async def send_audio(self, chunk: bytes) -> bool:
        """Encode ``chunk`` with the template and queue it as a text frame (see ``send``).

        With ``AudioFrameTemplate(..., as_bytes=True)`` the UTF-8 JSON goes out as a text frame
        without a str round trip (websockets would encode a str back to UTF-8 bytes anyway).
        """
        template = self.template
        if template is None:
            raise TypeError("send_audio needs AudioStreamSender(template=AudioFrameTemplate(...))")
        if template.as_bytes:
            return await self.send(template.encode_bytes(chunk), text=True)
        return await self.send(template.encode_str(chunk))

    async def send(self, message: str | bytes, *, text: bool = False) -> bool:
        """Queue ``message``. True: queued. False: dropped because the stream is disconnected.

        ``str`` goes out as a text frame, ``bytes`` as a binary frame unless ``text=True`` (the bytes
        are then UTF-8 text, sent as a text frame). When the queue is full the overflow policy
        applies (see the module docstring).
        """
        if self._ws is None:
            self.dropped += 1
            self._m_drop_disconnected.inc()
            return False
        q = self._queue
        if len(q) >= self.max_queue:
            if self.overflow == "drop_oldest":
                q.popleft()
                self.dropped += 1
                self._m_drop_overflow.inc()
            elif self.overflow == "raise":
                raise BackpressureError(
                    f"AudioStreamSender {self.name!r}: send queue full ({self.max_queue} messages)"
                )
            else:
                await self._wait_for_space()
                if self._ws is None:  # disconnected while we waited
                    self.dropped += 1
                    self._m_drop_disconnected.inc()
                    return False
        q.append((message, text))
        self._m_depth.set(len(q))
        self._idle.clear()
        self._wake.set()
        return True

    async def _wait_for_space(self) -> None:
        deadline = None if self.block_timeout is None else time.monotonic() + self.block_timeout
        while len(self._queue) >= self.max_queue and self._ws is not None:
            self._space.clear()
            if deadline is None:
                await self._space.wait()
                continue
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                await asyncio.wait_for(self._space.wait(), remaining)
            except (asyncio.TimeoutError, TimeoutError):  # distinct classes before Python 3.11
                raise BackpressureError(
                    f"AudioStreamSender {self.name!r}: send queue stayed full "
                    f"({self.max_queue} messages) for {self.block_timeout}s"
                ) from None

    async def flush(self) -> None:
        """Wait until everything queued so far has been handed to the socket (or dropped)."""
        while self._ws is not None and not self._idle.is_set():
            await self._idle.wait()

    # -- writer ----------------------------------------------------------------------------------

    async def _write_loop(self, ws: WebSocketLike) -> None:
        q = self._queue
        clock = time.perf_counter
        while True:
            while not q:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                if self._ws is not ws:
                    return
            message, text = q.popleft()
            self._space.set()
            self._m_depth.set(len(q))
            t0 = clock()
            try:
                if text and isinstance(message, bytes):
                    await ws.send(message, text=True)
                else:
                    await ws.send(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the transport failed: disconnect cleanly, never raise into senders
                self._writer = None  # we are the writer: _teardown must not cancel us
                await self._on_failure(ws, exc)
                return
            self._m_latency.observe(clock() - t0)
            self.sent += 1

    async def _on_failure(self, ws: WebSocketLike, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = exc
        self._m_failures.inc()
        log.warning(
            "AudioStreamSender %r: send failed (%s: %s); disconnecting", self.name, type(exc).__name__, exc
        )
        await self._teardown(drop_reason="disconnected")
        hook = self.on_disconnect
        if hook is None or self._closing:
            return
        try:
            again = hook(exc)
            if inspect.isawaitable(again):
                again = await again
            if again:
                await self.connect()
        except Exception as hook_exc:  # fail open: a broken hook leaves us disconnected, not crashed
            log.warning(
                "AudioStreamSender %r: reconnect failed (%s: %s)",
                self.name,
                type(hook_exc).__name__,
                hook_exc,
            )

    async def _teardown(self, *, drop_reason: str) -> None:
        ws, self._ws = self._ws, None
        writer, self._writer = self._writer, None
        if self._queue:
            n = len(self._queue)
            self.dropped += n
            self._m_drop_disconnected.inc(n)
            self._queue.clear()
            self._m_depth.set(0)
        self._idle.set()
        self._space.set()  # wake blocked senders: they see the disconnect and return False
        self._wake.set()  # wake the writer: it sees the swap and exits
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        if ws is not None:
            try:
                # Bounded: a peer that stopped reading never acknowledges the close frame, and
                # websockets' own close can wait on a full write buffer before its close_timeout.
                await asyncio.wait_for(ws.close(), self.close_timeout)
            except Exception as exc:  # already broken or stuck: closing is best effort
                log.debug("AudioStreamSender %r: close failed (%s); aborting", self.name, type(exc).__name__)
                transport = getattr(ws, "transport", None)
                if transport is not None:
                    transport.abort()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        queued = len(self._queue)
        return f"AudioStreamSender({self.name!r}, {state}, queued={queued}, overflow={self.overflow!r})"
