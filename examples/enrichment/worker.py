"""The enrichment worker: one reflection in, its enrichment out (JSON lines on stdin / stdout)."""

from __future__ import annotations

import json
import sys
from typing import Any

from examples.enrichment.enricher import PostEnricher
from examples.enrichment.scorer import HybridScorer
from examples.enrichment.songs import SongClient


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
