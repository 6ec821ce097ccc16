"""The tuned, caching Ollama client: ``OptimizedOllama`` / ``AsyncOptimizedOllama``.

Same methods and return types as ``ollama.Client`` / ``ollama.AsyncClient`` (they wrap them), plus pinned
runner options, named profiles, keep_alive, a real timeout, retries before the first token, a concurrency
limit, per-item embedding cache, recorded/replayed streams, warmup and keep-warm, and metrics::

    from infra.ollama import OptimizedOllama
    llm = OptimizedOllama.from_config()          # perf_config's "ollama" section
    r = llm.generate(model="llama3.2:3b", prompt=text, profile="stage1")

Importing this package imports neither ``ollama`` nor ``httpx``; they load on first construction.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "AsyncKeepWarm",
    "AsyncOptimizedOllama",
    "KeepWarm",
    "OllamaCacheSettings",
    "OllamaRunnerError",
    "OllamaSettings",
    "OptimizedOllama",
    "RunnerOptionWarning",
]

_LAZY = {
    "AsyncKeepWarm": "infra.ollama.warmup",
    "AsyncOptimizedOllama": "infra.ollama.aclient",
    "KeepWarm": "infra.ollama.warmup",
    "OptimizedOllama": "infra.ollama.client",
    "OllamaCacheSettings": "infra.ollama.settings",
    "OllamaSettings": "infra.ollama.settings",
    "OllamaRunnerError": "infra.ollama.runner",
    "RunnerOptionWarning": "infra.ollama.runner",
}

if TYPE_CHECKING:
    from infra.ollama.aclient import AsyncOptimizedOllama
    from infra.ollama.client import OptimizedOllama
    from infra.ollama.runner import OllamaRunnerError, RunnerOptionWarning
    from infra.ollama.settings import OllamaCacheSettings, OllamaSettings
    from infra.ollama.warmup import AsyncKeepWarm, KeepWarm


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'infra.ollama' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
