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

from typing import TYPE_CHECKING

from infra._lazy import lazy_exports

if TYPE_CHECKING:
    from infra.config.sections.ollama import OllamaCacheConfig as OllamaCacheConfig
    from infra.config.sections.ollama import OllamaConfig as OllamaConfig
    from infra.ollama.aclient import AsyncOptimizedOllama as AsyncOptimizedOllama
    from infra.ollama.client import OptimizedOllama as OptimizedOllama
    from infra.ollama.routing import Routing as Routing
    from infra.ollama.routing import route_official as route_official
    from infra.ollama.runner import OllamaRunnerError as OllamaRunnerError
    from infra.ollama.runner import RunnerOptionWarning as RunnerOptionWarning
    from infra.ollama.warmup import AsyncKeepWarm as AsyncKeepWarm
    from infra.ollama.warmup import KeepWarm as KeepWarm
else:
    __all__, __getattr__, __dir__ = lazy_exports(__name__)
