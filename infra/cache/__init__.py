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

from typing import TYPE_CHECKING

from infra._lazy import lazy_exports

if TYPE_CHECKING:
    from infra.cache._missing import MISSING as MISSING
    from infra.cache.backends.base import BackendStats as BackendStats
    from infra.cache.backends.base import CacheBackend as CacheBackend
    from infra.cache.backends.base import EntryInfo as EntryInfo
    from infra.cache.backends.base import StoredEntry as StoredEntry
    from infra.cache.core import Cache as Cache
    from infra.cache.decorator import cached as cached
    from infra.cache.keys import explain_key as explain_key
    from infra.cache.keys import make_key as make_key
    from infra.cache.process import get_cache as get_cache
    from infra.cache.process import reset_cache as reset_cache
    from infra.cache.process import set_cache as set_cache
    from infra.cache.record_types import register_type as register_type
    from infra.config.sections.cache import CacheConfig as CacheConfig
    from infra.config.sections.cache import NamespaceConfig as NamespaceConfig
else:
    __all__, __getattr__, __dir__ = lazy_exports(__name__)
