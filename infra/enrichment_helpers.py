"""Drop-in helpers for enrichment workers, at the import path seed 004 documents.

::

    from infra.enrichment_helpers import enable_caching_for_worker
    cached_classes = enable_caching_for_worker()
    HybridScorer = cached_classes["HybridScorer"]   # with caching; the rest of the worker stays the same

The classes come from the ``wrap`` list of perf_config.json; see ``infra.integrate``.
"""

from __future__ import annotations

from infra.integrate._enable import enable, enable_caching_for_worker, patch
from infra.integrate._wrap import cached_class

__all__ = ["cached_class", "enable", "enable_caching_for_worker", "patch"]
