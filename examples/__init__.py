"""Two "existing pipelines" standing for a user's code, and the stub services they run against.

* ``examples.enrichment``: a seed-004-like enrichment worker (HybridScorer, PostEnricher, SongClient);
* ``examples.voice``: a seed-000-like voice turn (STT over a WebSocket, memory search, LLM, TTS).

The pipeline packages never import ``infra`` and are never edited by the layer: the integrations live
beside them (``enrichment_worker_cached.py``: seed 004's three-line change; ``voice_turn_patched.py``:
``patch()`` for code that can't change its imports), configured by ``examples/perf_config.json``.
"""
