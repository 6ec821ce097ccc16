"""SongClient: song recommendations for a mood, over HTTP."""

from __future__ import annotations

import os
from typing import Any

import httpx


class SongClient:
    """GET {base_url}/v1/songs?mood=...&limit=... → a list of songs."""

    def __init__(self, base_url: str | None = None, *, timeout: float = 10.0) -> None:
        base = base_url or os.environ.get("EXAMPLE_SONGS_URL", "http://127.0.0.1:8081")
        self._http = httpx.Client(base_url=base, timeout=timeout)

    def recommend(self, mood: str, limit: int = 3) -> list[dict[str, Any]]:
        """Up to ``limit`` songs for ``mood``."""
        r = self._http.get("/v1/songs", params={"mood": mood, "limit": limit})
        r.raise_for_status()
        songs: list[dict[str, Any]] = r.json()
        return songs

    def close(self) -> None:
        self._http.close()
