"""The tuned, caching Ollama client: ``OptimizedOllama`` / ``AsyncOptimizedOllama``.

Subclasses of ``ollama.Client`` / ``ollama.AsyncClient`` (same constructor, methods, request bodies and
return types), plus runner options and keep_alive filled in where a call leaves them out, named profiles, a
real timeout, retries before the first token, a concurrency limit, per-item embedding cache,
recorded/replayed streams, warmup and keep-warm, and metrics::

    from infra.ollama import OptimizedOllama
    llm = OptimizedOllama()                      # perf_config's "ollama" section
    llm = OptimizedOllama(config.ollama)         # or a section given (OllamaConfig(timeout=10.0, ...))
    r = llm.generate(model="llama3.2:3b", prompt=text, profile="stage1")

    routing = infra.ollama.route_official()      # ollama.Client, ollama.chat, ... through the layer
    routing.undo()

Importing this package imports neither ``ollama`` nor ``httpx``; they load on first construction.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "AsyncKeepWarm",
    "AsyncOptimizedOllama",
    "KeepWarm",
    "OllamaCacheConfig",
    "OllamaConfig",
    "OllamaRunnerError",
    "OptimizedOllama",
    "Routing",
    "RunnerOptionWarning",
    "route_official",
]

_LAZY = {
    "AsyncKeepWarm": "infra.ollama.warmup",
    "AsyncOptimizedOllama": "infra.ollama.aclient",
    "KeepWarm": "infra.ollama.warmup",
    "OptimizedOllama": "infra.ollama.client",
    "OllamaCacheConfig": "infra.config.sections.ollama",
    "OllamaConfig": "infra.config.sections.ollama",
    "OllamaRunnerError": "infra.ollama.runner",
    "RunnerOptionWarning": "infra.ollama.runner",
    "Routing": "infra.ollama.routing",
    "route_official": "infra.ollama.routing",
}

if TYPE_CHECKING:
    from infra.config.sections.ollama import OllamaCacheConfig, OllamaConfig
    from infra.ollama.aclient import AsyncOptimizedOllama
    from infra.ollama.client import OptimizedOllama
    from infra.ollama.routing import Routing, route_official
    from infra.ollama.runner import OllamaRunnerError, RunnerOptionWarning
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
