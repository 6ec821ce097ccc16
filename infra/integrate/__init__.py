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

from typing import TYPE_CHECKING

from infra._lazy import lazy_exports

if TYPE_CHECKING:
    from infra.integrate._enable import IntegrationHandle as IntegrationHandle
    from infra.integrate._enable import IntegrationReport as IntegrationReport
    from infra.integrate._enable import WrappedClasses as WrappedClasses
    from infra.integrate._enable import active_handle as active_handle
    from infra.integrate._enable import enable as enable
    from infra.integrate._enable import enable_caching_for_worker as enable_caching_for_worker
    from infra.integrate._enable import patch as patch
    from infra.integrate._wrap import MethodSettings as MethodSettings
    from infra.integrate._wrap import cached_class as cached_class
    from infra.integrate.ollama_transport import CachedOllamaTransport as CachedOllamaTransport
else:
    __all__, __getattr__, __dir__ = lazy_exports(__name__)
