"""Shared constants and helpers for tests/ollama (a plain module: tests/ has no packages)."""

from __future__ import annotations

from typing import Any

from infra.ollama import OllamaCacheConfig, OllamaConfig

LLM = "llama3.2:3b"
EMBED = "nomic-embed-text:latest"


def settings(**kw: Any) -> OllamaConfig:
    """Client settings for tests: short timeout and backoff; cache options via ``cache_kw``."""
    cache_kw = kw.pop("cache_kw", {})
    kw.setdefault("timeout", 10.0)
    kw.setdefault("retry_backoff", 0.01)
    return OllamaConfig(cache=OllamaCacheConfig(**cache_kw), **kw)
