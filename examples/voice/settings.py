"""Settings of the voice pipeline (what a pydantic-settings object would hold)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    sample_rate: int = 16000
    chunk_bytes: int = 1024  # 32 ms of 16 kHz 16-bit mono
    rag_context_target_tokens: int = 120
    rag_top_k: int = 2
    llm_model: str = "llama3.2:3b"
    embed_model: str = "nomic-embed-text:latest"
    voice: str = "leo"
    ollama_host: str = field(default_factory=lambda: _env("OLLAMA_HOST", "http://127.0.0.1:11434"))
    stt_url: str = field(default_factory=lambda: _env("EXAMPLE_STT_URL", "ws://127.0.0.1:8082/v1/stt"))
    search_url: str = field(default_factory=lambda: _env("EXAMPLE_SEARCH_URL", "http://127.0.0.1:8081"))
    tts_url: str = field(default_factory=lambda: _env("EXAMPLE_TTS_URL", "http://127.0.0.1:8081"))
