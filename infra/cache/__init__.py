"""Content-addressed cache: SHA-256 keys, SQLite by default, in-process L1 in front, safe codecs,
single-flight, fail-open.

::

    from infra.cache import get_cache, cached, make_key, explain_key, Cache, MISSING

    cache = get_cache()                               # process-wide, from perf_config's "cache" section
    key = make_key("inference", "llama3", prompt, options={"num_ctx": 4096})
    value = cache.get_or_compute("inference", key, lambda: slow_call())

    @cached(namespace="inference", ttl=3600)
    async def generate(prompt: str, *, model: str = "llama3") -> str: ...

Imports stay light: the SQLite store, numpy and torch support load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "MISSING",
    "BackendStats",
    "Cache",
    "CacheBackend",
    "CacheConfig",
    "EntryInfo",
    "NamespaceConfig",
    "StoredEntry",
    "cached",
    "explain_key",
    "get_cache",
    "make_key",
    "register_type",
    "reset_cache",
    "set_cache",
]

_LAZY = {
    "MISSING": "infra.cache._missing",
    "BackendStats": "infra.cache.backend",
    "CacheBackend": "infra.cache.backend",
    "EntryInfo": "infra.cache.backend",
    "StoredEntry": "infra.cache.backend",
    "CacheConfig": "infra.config.sections.cache",
    "NamespaceConfig": "infra.config.sections.cache",
    "Cache": "infra.cache.core",
    "get_cache": "infra.cache.process",
    "set_cache": "infra.cache.process",
    "reset_cache": "infra.cache.process",
    "cached": "infra.cache.decorator",
    "make_key": "infra.cache.keys",
    "explain_key": "infra.cache.keys",
    "register_type": "infra.cache.record_types",
}

if TYPE_CHECKING:
    from infra.cache._missing import MISSING
    from infra.cache.backend import BackendStats, CacheBackend, EntryInfo, StoredEntry
    from infra.cache.core import Cache
    from infra.cache.decorator import cached
    from infra.cache.keys import explain_key, make_key
    from infra.cache.process import get_cache, reset_cache, set_cache
    from infra.cache.record_types import register_type
    from infra.config.sections.cache import CacheConfig, NamespaceConfig


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'infra.cache' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
