"""STTClient: streams PCM chunks over a WebSocket (seed 000's precomputed message template)."""

from __future__ import annotations

import base64
import json
import logging

import websockets

from examples.voice.settings import Settings

logger = logging.getLogger(__name__)


class STTClient:
    """ElevenLabs-style realtime STT: ``input_audio_chunk`` messages, then a commit for the transcript."""

    def __init__(self, settings: Settings | None = None, *, api_key: str = "test") -> None:
        self._settings = settings or Settings()
        self._api_key = api_key
        self._ws: websockets.ClientConnection | None = None
        # Only the audio varies per chunk: the JSON around it is built once (seed 000, task 2).
        self._msg_prefix = '{"message_type":"input_audio_chunk","audio_base_64":"'
        self._msg_suffix = f'","commit":false,"sample_rate":{self._settings.sample_rate}}}'

    async def connect(self) -> None:
        self._ws = await websockets.connect(
            self._settings.stt_url, additional_headers={"xi-api-key": self._api_key}, max_size=2**20
        )

    async def send_audio(self, data: bytes) -> None:
        """Send one PCM chunk."""
        if self._ws is None:
            return
        msg = self._msg_prefix + base64.b64encode(data).decode() + self._msg_suffix
        await self._ws.send(msg)

    async def commit(self) -> str:
        """Ask for the transcript of what was sent since the last commit."""
        assert self._ws is not None, "connect() first"
        await self._ws.send('{"message_type":"commit"}')
        while True:
            reply = json.loads(await self._ws.recv())
            if reply.get("message_type") == "committed_transcript":
                return str(reply["text"])
            if reply.get("message_type") == "error":
                raise RuntimeError(f"STT error: {reply.get('error')}")

    async def disconnect(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    async def transcribe(self, audio: bytes) -> str:
        """A whole utterance: connect, stream it in 32 ms chunks, commit, disconnect."""
        await self.connect()
        try:
            step = self._settings.chunk_bytes
            for i in range(0, len(audio), step):
                await self.send_audio(audio[i : i + step])
            return await self.commit()
        finally:
            await self.disconnect()
