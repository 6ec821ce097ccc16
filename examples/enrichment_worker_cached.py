"""The enrichment worker: one reflection in, its enrichment out (JSON lines on stdin / stdout)."""

from __future__ import annotations

import json
import sys
from typing import Any

from examples.enrichment.enricher import PostEnricher
from examples.enrichment.scorer import HybridScorer
from examples.enrichment.songs import SongClient

# --- perf-infra: seed 004's three-line change; the rest is examples/enrichment/worker.py verbatim ---
# ruff: noqa: F811, I001
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent.parent))

from infra.enrichment_helpers import enable_caching_for_worker
cached_classes = enable_caching_for_worker()

HybridScorer = cached_classes["HybridScorer"]  # NEW - with caching
PostEnricher = cached_classes["PostEnricher"]  # NEW - with caching
SongClient = cached_classes["SongClient"]  # NEW - with caching
# --- end perf-infra ---


class EnrichmentWorker:
    """Scores a reflection, enriches it through two LLM stages, and recommends songs for its mood."""

    def __init__(self) -> None:
        self.scorer = HybridScorer()
        self.enricher = PostEnricher()
        self.songs = SongClient()

    def process(self, reflection: str) -> dict[str, Any]:
        emotion = self.scorer.score(reflection)
        enrichment = self.enricher.enrich(reflection, emotion["top"])
        songs = self.songs.recommend(emotion["top"], limit=3)
        return {"reflection": reflection, "emotion": emotion, "enrichment": enrichment, "songs": songs}

    def close(self) -> None:
        self.scorer.close()
        self.enricher.close()
        self.songs.close()


def main() -> int:
    worker = EnrichmentWorker()
    try:
        for line in sys.stdin:
            if line.strip():
                print(json.dumps(worker.process(line.strip())), flush=True)
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
