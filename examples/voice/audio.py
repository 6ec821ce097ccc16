"""Test audio for the examples: PCM whose bytes carry the spoken text (the STT stub reads it back)."""

from __future__ import annotations


def speak(text: str, *, chunk_bytes: int = 1024) -> bytes:
    """The utterance as 16-bit PCM bytes, padded with silence to whole 32 ms chunks."""
    raw = text.encode("utf-8")
    pad = (-len(raw)) % chunk_bytes or 0
    return raw + b"\0" * (pad + chunk_bytes)  # one chunk of trailing silence, as a VAD would leave
