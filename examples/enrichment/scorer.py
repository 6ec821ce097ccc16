"""HybridScorer: emotion scores for a reflection, from embedding similarity and a small lexicon."""

from __future__ import annotations

import math
import os
import re
from typing import Any

import ollama

EMOTION_ANCHORS = {
    "stress": "feeling stressed, anxious and overwhelmed by everything",
    "gratitude": "grateful and thankful for family, friends and small things",
    "joy": "happy, excited and full of energy today",
    "sadness": "sad, lonely and missing someone",
    "calm": "calm, peaceful and rested",
}
LEXICON = {
    "stressed": "stress",
    "overwhelmed": "stress",
    "anxious": "stress",
    "deadline": "stress",
    "grateful": "gratitude",
    "thankful": "gratitude",
    "family": "gratitude",
    "happy": "joy",
    "excited": "joy",
    "laughed": "joy",
    "sad": "sadness",
    "lonely": "sadness",
    "miss": "sadness",
    "calm": "calm",
    "peaceful": "calm",
    "rested": "calm",
}


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


class HybridScorer:
    """Scores the five emotions of a reflection: ``alpha`` x embedding similarity + (1 - alpha) x lexicon."""

    def __init__(
        self, host: str | None = None, *, model: str = "all-minilm:latest", alpha: float = 0.7
    ) -> None:
        self.model = model
        self.alpha = alpha
        self._client = ollama.Client(host=host or os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434"))
        self._anchors: dict[str, list[float]] | None = None

    def _anchor_vectors(self) -> dict[str, list[float]]:
        if self._anchors is None:
            labels = list(EMOTION_ANCHORS)
            r = self._client.embed(model=self.model, input=[EMOTION_ANCHORS[k] for k in labels])
            self._anchors = {k: list(v) for k, v in zip(labels, r.embeddings, strict=True)}
        return self._anchors

    def close(self) -> None:
        self._client.close()

    def score(self, text: str) -> dict[str, Any]:
        """Emotion scores (rounded to 6 places), the top emotion, and the lexicon words found."""
        if not text.strip():
            raise ValueError("cannot score an empty reflection")
        anchors = self._anchor_vectors()
        vec = list(self._client.embed(model=self.model, input=text).embeddings[0])
        words = re.findall(r"[a-z']+", text.lower())
        hits = sorted({w for w in words if w in LEXICON})
        lex = {k: 0.0 for k in EMOTION_ANCHORS}
        for w in hits:
            lex[LEXICON[w]] += 1.0
        total = sum(lex.values()) or 1.0
        scores = {
            k: round(self.alpha * _cosine(vec, anchors[k]) + (1 - self.alpha) * lex[k] / total, 6)
            for k in EMOTION_ANCHORS
        }
        top = max(scores, key=lambda k: (scores[k], k))
        return {"scores": scores, "top": top, "lexicon_hits": hits}
