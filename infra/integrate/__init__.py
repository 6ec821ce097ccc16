"""Drop-in integration: apply perf_config to an existing worker without editing its code.

::

    import infra
    handle = infra.enable()                         # config, cache, metrics, thread budget; idempotent
    print(handle.report())                          # what it did, and what failed open
    classes = infra.enable_caching_for_worker()     # the classes under "wrap" in perf_config, cached
    HybridScorer = classes["HybridScorer"]
    Scorer = infra.cached_class(Scorer, methods=["score"], namespace="emotion_scoring", ttl=30 * 86400)
    infra.patch()                                   # or: cache the "wrap" methods on the classes in place
    handle.undo()                                   # put everything back

Nothing heavy is imported here; the cache, metrics and server load when ``enable()`` runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "CachedOllamaTransport",
    "IntegrationHandle",
    "MethodSettings",
    "WrappedClasses",
    "active_handle",
    "cached_class",
    "enable",
    "enable_caching_for_worker",
    "patch",
]

_LAZY = {
    "CachedOllamaTransport": "infra.integrate.ollama_transport",
    "IntegrationHandle": "infra.integrate._enable",
    "WrappedClasses": "infra.integrate._enable",
    "active_handle": "infra.integrate._enable",
    "enable": "infra.integrate._enable",
    "enable_caching_for_worker": "infra.integrate._enable",
    "patch": "infra.integrate._enable",
    "MethodSettings": "infra.integrate._wrap",
    "cached_class": "infra.integrate._wrap",
}

if TYPE_CHECKING:
    from infra.integrate._enable import (
        IntegrationHandle,
        WrappedClasses,
        active_handle,
        enable,
        enable_caching_for_worker,
        patch,
    )
    from infra.integrate._wrap import MethodSettings, cached_class
    from infra.integrate.ollama_transport import CachedOllamaTransport


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'infra.integrate' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
