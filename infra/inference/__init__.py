"""Local inference helpers: a CPU thread budget, dynamic micro-batching, a cached embedder.

::

    from infra.inference import apply_thread_budget, MicroBatcher, CachedEmbedder
    apply_thread_budget()                                  # torch + Ollama share the cores
    batcher = MicroBatcher(model_fn, max_batch_size=32, max_wait_ms=2)
    vec = await batcher.asubmit(text)                      # or batcher.submit(text) from a thread
    emb = CachedEmbedder.for_sentence_transformer(model, model_id="all-MiniLM-L6-v2")

torch loads only when ``apply_thread_budget`` runs (or a wrapped model already loaded it).
"""

from __future__ import annotations

from infra.inference.batcher import BatcherStats, MicroBatcher
from infra.inference.embedder import CachedEmbedder, EmbedderStats
from infra.inference.threads import ThreadBudget, apply_thread_budget, available_cores, plan_thread_budget

__all__ = [
    "BatcherStats",
    "CachedEmbedder",
    "EmbedderStats",
    "MicroBatcher",
    "ThreadBudget",
    "apply_thread_budget",
    "available_cores",
    "plan_thread_budget",
]
