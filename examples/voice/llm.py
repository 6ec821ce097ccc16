"""Responder: the assistant's reply through the official async ollama client."""

from __future__ import annotations

import ollama

from examples.voice.settings import Settings

SYSTEM = (
    "You are Leo, a warm voice companion. Answer in at most two sentences.\nWhat you remember:\n{context}"
)


class Responder:
    """One chat call per turn, with the memory context in the system prompt."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings or Settings()
        self._client = ollama.AsyncClient(host=self._settings.ollama_host)

    async def reply(self, transcript: str, context: str) -> str:
        r = await self._client.chat(
            model=self._settings.llm_model,
            messages=[
                {"role": "system", "content": SYSTEM.format(context=context)},
                {"role": "user", "content": transcript},
            ],
            options={"temperature": 0.3, "num_predict": 60},
        )
        return r.message.content or ""

    async def aclose(self) -> None:
        await self._client.close()
