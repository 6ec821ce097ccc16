"""perf-infra: an opt-in performance layer for Python AI and voice pipelines.

The front door. Everything here is imported lazily (PEP 562 ``__getattr__``), so ``import infra`` costs a
few milliseconds and pulls in none of aiohttp, httpx, ollama, torch, asyncpg or redis; each name loads its
module on first use. ``infra.cache``, ``infra.metrics``, ``infra.db`` and ``infra.enrichment_helpers``
are public modules too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "AsyncOptimizedOllama": "infra.ollama",
    "AsyncPerfClient": "infra.http",
    "AudioFrameTemplate": "infra.hotpath",
    "AudioStreamSender": "infra.hotpath",
    "CachedEmbedder": "infra.inference",
    "ConfigError": "infra.errors",
    "MicroBatcher": "infra.inference",
    "OptimizedOllama": "infra.ollama",
    "PerfClient": "infra.http",
    "PerfConfig": "infra.config",
    "PerfInfraError": "infra.errors",
    "apply_thread_budget": "infra.inference",
    "cached": "infra.cache",
    "cached_class": "infra.integrate",
    "enable": "infra.integrate",
    "enable_caching_for_worker": "infra.integrate",
    "gather_ordered": "infra.hotpath",
    "get_cache": "infra.cache",
    "get_config": "infra.config",
    "get_metrics": "infra.metrics",
    "load_config": "infra.config",
    "metrics_asgi_app": "infra.server",
    "patch": "infra.integrate",
    "serve_metrics": "infra.server",
    "timed": "infra.metrics",
    "warm": "infra.hotpath",
}

__all__ = [
    "AsyncOptimizedOllama",
    "AsyncPerfClient",
    "AudioFrameTemplate",
    "AudioStreamSender",
    "CachedEmbedder",
    "ConfigError",
    "MicroBatcher",
    "OptimizedOllama",
    "PerfClient",
    "PerfConfig",
    "PerfInfraError",
    "__version__",
    "apply_thread_budget",
    "cached",
    "cached_class",
    "enable",
    "enable_caching_for_worker",
    "gather_ordered",
    "get_cache",
    "get_config",
    "get_metrics",
    "load_config",
    "metrics_asgi_app",
    "patch",
    "serve_metrics",
    "timed",
    "warm",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from infra.cache import cached, get_cache
    from infra.config import PerfConfig, get_config, load_config
    from infra.errors import ConfigError, PerfInfraError
    from infra.hotpath import AudioFrameTemplate, AudioStreamSender, gather_ordered, warm
    from infra.http import AsyncPerfClient, PerfClient
    from infra.inference import CachedEmbedder, MicroBatcher, apply_thread_budget
    from infra.integrate import cached_class, enable, enable_caching_for_worker, patch
    from infra.metrics import get_metrics, timed
    from infra.ollama import AsyncOptimizedOllama, OptimizedOllama
    from infra.server import metrics_asgi_app, serve_metrics


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'infra' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # next access skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
