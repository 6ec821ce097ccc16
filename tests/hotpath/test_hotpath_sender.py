"""AudioStreamSender against a real websockets server on 127.0.0.1: order, backpressure policies,
clean disconnect on a failed send, reconnect hook, template use."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from infra.errors import BackpressureError
from infra.hotpath import AudioFrameTemplate, AudioStreamSender

WSServer = Any  # the ws_server fixture's type lives in conftest.py


async def test_messages_arrive_in_order_and_close_drains_the_queue(ws_server: WSServer) -> None:
    async with AudioStreamSender(ws_server.url, max_queue=8) as sender:
        for i in range(20):
            assert await sender.send(f"m{i}")
    await ws_server.wait_for(20)
    assert ws_server.messages == [f"m{i}" for i in range(20)]
    assert sender.sent == 20 and sender.dropped == 0 and not sender.connected


async def test_stream_label_is_the_origin_without_path_or_query(ws_server: WSServer) -> None:
    sender = AudioStreamSender(ws_server.url)
    assert sender.name.startswith("ws://127.0.0.1:")
    assert "secret" not in sender.name and "/stt" not in sender.name


async def test_send_audio_uses_the_template(ws_server: WSServer) -> None:
    template = AudioFrameTemplate(
        {"message_type": "input_audio_chunk", "audio_base_64": "", "commit": False, "sample_rate": 16000},
        "audio_base_64",
    )
    async with AudioStreamSender(ws_server.url, template=template) as sender:
        await sender.send_audio(b"\x00" * 512)
    await ws_server.wait_for(1)
    msg = json.loads(ws_server.messages[0])
    assert (
        msg["message_type"] == "input_audio_chunk" and msg["sample_rate"] == 16000 and msg["commit"] is False
    )


async def test_bytes_template_goes_out_as_a_text_frame(ws_server: WSServer) -> None:
    template = AudioFrameTemplate({"type": "audio"}, "data", as_bytes=True)
    async with AudioStreamSender(ws_server.url, template=template) as sender:
        await sender.send_audio(b"\x01\x02\x03")
        await sender.send(b"\x00binary")
    await ws_server.wait_for(2)
    assert ws_server.messages == ['{"type":"audio","data":"AQID"}', b"\x00binary"]  # str: a text frame


async def test_send_audio_without_template_is_a_clear_type_error(ws_server: WSServer) -> None:
    sender = AudioStreamSender(ws_server.url)
    with pytest.raises(TypeError, match="template"):
        await sender.send_audio(b"x")


async def test_drop_oldest_keeps_the_newest_messages_when_the_queue_overflows(ws_server: WSServer) -> None:
    """Ten sends with no yield in between: the writer can't drain, so only the last 3 survive."""
    async with AudioStreamSender(ws_server.url, max_queue=3, overflow="drop_oldest") as sender:
        for i in range(10):
            assert await sender.send(f"m{i}")  # never awaits: drop_oldest doesn't block
        assert sender.queue_depth == 3
    await ws_server.wait_for(3)
    assert ws_server.messages == ["m7", "m8", "m9"]
    assert sender.dropped == 7


async def test_raise_policy_raises_backpressure_error_when_full(ws_server: WSServer) -> None:
    async with AudioStreamSender(ws_server.url, max_queue=2, overflow="raise") as sender:
        await sender.send("a")
        await sender.send("b")
        with pytest.raises(BackpressureError, match="send queue full"):
            await sender.send("c")
    await ws_server.wait_for(2)
    assert ws_server.messages == ["a", "b"]


async def test_block_policy_waits_for_room_and_loses_nothing(ws_server: WSServer) -> None:
    async with AudioStreamSender(ws_server.url, max_queue=2, overflow="block") as sender:
        for i in range(10):
            await sender.send(f"m{i}")
            assert sender.queue_depth <= 2
    await ws_server.wait_for(10)
    assert ws_server.messages == [f"m{i}" for i in range(10)]
    assert sender.dropped == 0


async def test_block_policy_with_timeout_raises_when_the_peer_stops_reading(ws_server: WSServer) -> None:
    """The server never reads: socket buffers fill, the writer stalls, the queue stays full."""
    stop = asyncio.Event()

    async def never_read(ws: Any, seen: list[str | bytes]) -> None:
        ws.transport.pause_reading()  # stop reading the socket: TCP flow control reaches the sender
        await stop.wait()
        ws.transport.resume_reading()
        async for _ in ws:  # drain what piled up, so the server sees the client leave and closes promptly
            pass

    ws_server.handler = never_read
    big = "x" * (1 << 20)  # with compression off (below): "x" * N would deflate to nothing
    sender = AudioStreamSender(
        ws_server.url,
        max_queue=1,
        overflow="block",
        block_timeout=0.2,
        connect_kwargs={"max_size": None, "compression": None, "close_timeout": 0.1},
    )
    await sender.connect()
    try:
        with pytest.raises(BackpressureError, match="stayed full"):
            for _ in range(200):  # bounded: buffers on loopback hold a few MB at most
                assert await sender.send(big), "the stream disconnected instead of stalling"
    finally:
        stop.set()
        await sender.close(drain=False)


async def test_failed_send_disconnects_cleanly_and_later_sends_return_false(
    ws_server: WSServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Seed 000's behaviour: log a warning, disconnect, carry on without raising."""

    async def close_after_one(ws: Any, seen: list[str | bytes]) -> None:
        seen.append(await ws.recv())
        ws_server.got_message.set()
        await ws.close()

    ws_server.handler = close_after_one
    disconnected = asyncio.Event()
    errors: list[BaseException] = []

    def on_disconnect(exc: BaseException) -> bool:
        errors.append(exc)
        disconnected.set()
        return False

    sender = AudioStreamSender(ws_server.url, on_disconnect=on_disconnect)
    await sender.connect()
    await sender.send("first")
    await ws_server.wait_for(1)
    with caplog.at_level(logging.WARNING, logger="infra.hotpath.sender"):
        for i in range(50):  # bounded: the close frame is seen within a few loop turns
            if disconnected.is_set():
                break
            await sender.send(f"after{i}")
            await asyncio.sleep(0.01)
        await asyncio.wait_for(disconnected.wait(), 5)
    assert not sender.connected
    assert sender.failures == 1 and errors and sender.last_error is errors[0]
    assert "send failed" in caplog.text
    assert await sender.send("later") is False  # no exception into the audio loop
    await sender.close()


async def test_reconnect_hook_returning_true_resumes_on_a_new_connection(ws_server: WSServer) -> None:
    """Ordered by events, not by sleeps (it once failed under load): the server closes the first
    connection and says so; one send then fails on the client, the hook asks for a reconnect, and the
    connect factory signals the second connection as it hands it over, so the sender holds it before the
    test looks. The waits are bounded as hang guards only."""
    from websockets.asyncio.client import connect

    first_closed = asyncio.Event()

    async def handler(ws: Any, seen: list[str | bytes]) -> None:
        if len(ws_server.connections) == 1:
            seen.append(await ws.recv())
            ws_server.got_message.set()
            await ws.close()  # returns once the client answered the close: its state is no longer OPEN
            first_closed.set()
            return
        async for m in ws:
            seen.append(m)
            ws_server.got_message.set()

    ws_server.handler = handler
    opened = 0
    reopened = asyncio.Event()
    hook_calls: list[BaseException] = []

    async def factory() -> Any:
        nonlocal opened
        ws = await connect(ws_server.url)
        opened += 1
        if opened == 2:
            reopened.set()  # the sender stores ws in the same step, before the test task runs again
        return ws

    async def on_disconnect(exc: BaseException) -> bool:
        hook_calls.append(exc)
        return True

    sender = AudioStreamSender(connect=factory, on_disconnect=on_disconnect)
    await sender.connect()
    await sender.send("one")
    await asyncio.wait_for(first_closed.wait(), 10)
    assert await sender.send("lost") is True  # queued; the writer's send fails on the closed connection
    await asyncio.wait_for(reopened.wait(), 10)
    assert sender.connected and len(hook_calls) == 1 and sender.failures == 1
    await sender.send("two")
    await sender.close()
    await ws_server.wait_for(2, timeout=10)
    assert len(ws_server.connections) == 2
    assert ws_server.connections == [["one"], ["two"]]


async def test_connect_factory_and_argument_checks(ws_server: WSServer) -> None:
    from websockets.asyncio.client import connect

    async def factory() -> Any:
        return await connect(ws_server.url)

    async with AudioStreamSender(connect=factory, name="stt") as sender:
        await sender.send(b"\x01\x02")
    await ws_server.wait_for(1)
    assert ws_server.messages == [b"\x01\x02"]
    with pytest.raises(ValueError, match="exactly one"):
        AudioStreamSender()
    with pytest.raises(ValueError, match="overflow"):
        AudioStreamSender(ws_server.url, overflow="spill")  # type: ignore[arg-type]


async def test_send_before_connect_is_dropped_not_raised() -> None:
    sender = AudioStreamSender("ws://127.0.0.1:9/x")
    assert await sender.send("x") is False
    assert sender.dropped == 1


async def test_send_latency_and_queue_depth_go_to_metrics_labelled_by_origin(ws_server: WSServer) -> None:
    from infra.metrics import get_metrics

    sender = AudioStreamSender(ws_server.url, name=None)
    async with sender:
        for i in range(5):
            await sender.send(f"m{i}")
    await ws_server.wait_for(5)
    series = [
        s
        for s in get_metrics().histogram_stats("infra_ws_send_duration_seconds")
        if s["labels"]["stream"] == sender.name
    ]
    assert series and series[0]["count"] >= 5
    assert all(
        "secret" not in s["labels"]["stream"]
        for s in get_metrics().histogram_stats("infra_ws_send_duration_seconds")
    )
    assert get_metrics().get("infra_ws_send_queue_depth") is not None
