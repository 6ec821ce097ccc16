"""One voice turn: audio in → transcript → memory context → reply → speech out."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from typing import Any

from examples.voice.llm import Responder
from examples.voice.memory import MemoryExtractor, OllamaEmbedder, SearchStore
from examples.voice.settings import Settings
from examples.voice.stt import STTClient
from examples.voice.tts import TTSClient


class VoiceTurn:
    """The pipeline of one turn; ``run(audio)`` returns the transcript, context, reply and speech."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.stt = STTClient(self.settings)
        self.store = SearchStore(self.settings)
        self.embedder = OllamaEmbedder(self.settings)
        self.memory = MemoryExtractor(self.store, self.embedder, self.settings)
        self.responder = Responder(self.settings)
        self.tts = TTSClient(self.settings)

    async def run(self, audio: bytes) -> dict[str, Any]:
        transcript = await self.stt.transcribe(audio)
        context = await self.memory.pre_load_context(transcript)
        reply = await self.responder.reply(transcript, context)
        speech = await self.tts.synthesize(reply)
        return {"transcript": transcript, "context": context, "reply": reply, "speech": speech}

    async def aclose(self) -> None:
        await self.store.aclose()
        await self.embedder.aclose()
        await self.responder.aclose()
        await self.tts.aclose()


async def run_turns(audios: list[bytes]) -> list[dict[str, Any]]:
    """Run turns one after another (a conversation), closing the clients at the end."""
    turn = VoiceTurn()
    try:
        return [await turn.run(a) for a in audios]
    finally:
        await turn.aclose()


def main() -> int:
    """Utterances as text lines on stdin (the examples' audio carries its text) → JSON lines."""
    from examples.voice.audio import speak

    lines = [line.strip() for line in sys.stdin if line.strip()]
    for r in asyncio.run(run_turns([speak(line) for line in lines])):
        speech = r.pop("speech")
        r["speech_sha256"] = hashlib.sha256(speech).hexdigest()
        print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
