"""TTSClient: text to PCM over HTTP."""

from __future__ import annotations

import httpx

from examples.voice.settings import Settings


class TTSClient:
    """POST {tts_url}/v1/tts {"text", "voice"} → 16 kHz 16-bit PCM bytes."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings or Settings()
        self._http: httpx.AsyncClient | None = None

    async def synthesize(self, text: str, voice: str | None = None) -> bytes:
        if self._http is None:
            self._http = httpx.AsyncClient(base_url=self._settings.tts_url, timeout=30.0)
        r = await self._http.post("/v1/tts", json={"text": text, "voice": voice or self._settings.voice})
        r.raise_for_status()
        return r.content

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
