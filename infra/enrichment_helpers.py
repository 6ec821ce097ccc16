"""Drop-in helpers for enrichment workers, at the import path seed 004 documents.

::

    from infra.enrichment_helpers import enable_caching_for_worker
    cached_classes = enable_caching_for_worker()   # caches the `wrap` classes in place; nothing else changes

The classes come from the ``wrap`` list of perf_config.json; see ``infra.integrate``. Seed 004's third line,
``HybridScorer = cached_classes["HybridScorer"]``, still works (it is the same class) but isn't needed;
``cached_classes.get_class(HybridScorer)`` is the typed way to get (and check) it.
"""

from __future__ import annotations

from infra.integrate._enable import enable, enable_caching_for_worker, patch
from infra.integrate._wrap import cached_class

__all__ = ["cached_class", "enable", "enable_caching_for_worker", "patch"]
