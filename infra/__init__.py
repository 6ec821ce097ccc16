"""perf-infra: an opt-in performance layer for Python AI and voice pipelines.

The front door. Everything here is imported lazily (PEP 562 ``__getattr__``), so ``import infra`` costs a
few milliseconds and pulls in none of aiohttp, httpx, ollama, torch, asyncpg or redis; each name loads its
module on first use. ``infra.cache``, ``infra.metrics`` and ``infra.enrichment_helpers`` are public
modules too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "AsyncOptimizedOllama": "infra.ollama",
    "ConfigError": "infra.errors",
    "OptimizedOllama": "infra.ollama",
    "cached_class": "infra.integrate",
    "enable": "infra.integrate",
    "enable_caching_for_worker": "infra.integrate",
    "metrics_asgi_app": "infra.server",
    "patch": "infra.integrate",
    "serve_metrics": "infra.server",
    "PerfConfig": "infra.config",
    "PerfInfraError": "infra.errors",
    "get_config": "infra.config",
    "get_metrics": "infra.metrics",
    "load_config": "infra.config",
    "timed": "infra.metrics",
}

__all__ = sorted([*_EXPORTS, "__version__"])

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from infra.config import PerfConfig, get_config, load_config
    from infra.errors import ConfigError, PerfInfraError
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
