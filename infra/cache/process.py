"""The process-wide cache: ``get_cache()`` builds it once from ``infra.config.get_config().cache``.

``set_cache`` swaps it (tests, embedding applications), ``reset_cache`` closes it so the next
``get_cache()`` rebuilds it from the (possibly reloaded) configuration. ``PERF_ENABLED=0`` in the
environment, or ``enabled: false`` in the config, gives a disabled cache: a pure pass-through.
"""

from __future__ import annotations

import dataclasses
import threading

from infra.cache.core import Cache
from infra.config.sections.cache import CacheConfig

__all__ = ["get_cache", "reset_cache", "set_cache"]

_global: Cache | None = None
_global_lock = threading.Lock()


def _settings_from_config() -> CacheConfig:
    """The process config's ``cache`` section. ``get_config`` applies the one failure policy: a file
    that switches the layer or the cache off is obeyed, and an unusable one gives the layer off with one
    warning (never the built-in defaults, which cache). ``PERF_ENABLED=0`` also wins over a config set in
    code (``set_config``)."""
    from infra.config import get_config
    from infra.config._loader import env_says_off

    section = get_config().cache  # (the loader applied the top-level switch to it)
    off = env_says_off("PERF_ENABLED")
    return dataclasses.replace(section, enabled=False) if off else section


def get_cache() -> Cache:
    """The process-wide cache, built on first use from ``infra.config.get_config().cache``."""
    c = _global
    if c is not None:
        return c
    return _build_global()


def _build_global() -> Cache:
    global _global
    with _global_lock:
        if _global is None:
            _global = Cache(_settings_from_config())
        return _global


def set_cache(cache: Cache | None) -> Cache | None:
    """Replace the process-wide cache (tests, embedding apps); returns the previous one (not closed)."""
    global _global
    with _global_lock:
        prev, _global = _global, cache
    return prev


def reset_cache() -> None:
    """Close and forget the process-wide cache; the next ``get_cache()`` rebuilds it from config."""
    prev = set_cache(None)
    if prev is not None:
        prev.close()
