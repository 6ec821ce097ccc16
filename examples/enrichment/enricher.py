"""PostEnricher: two LLM stages over a reflection through the official ollama client."""

from __future__ import annotations

import os
from typing import Any

import ollama

STAGE1_SYSTEM = "You summarise journal reflections in two sentences, warmly and without judgement."
STAGE2_PROMPT = (
    "Reflection summary: {summary}\nDominant emotion: {emotion}\n"
    "Write a short narrative the user could read back next week."
)


class PostEnricher:
    """Stage 1 (chat): a summary. Stage 2 (generate): a narrative from the summary and the emotion."""

    def __init__(self, host: str | None = None, *, model: str = "llama3.2:3b") -> None:
        self.model = model
        self._client = ollama.Client(host=host or os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434"))

    def close(self) -> None:
        self._client.close()

    def enrich(self, text: str, emotion: str) -> dict[str, Any]:
        """Summary, narrative and the tokens both stages generated."""
        r1 = self._client.chat(
            model=self.model,
            messages=[{"role": "system", "content": STAGE1_SYSTEM}, {"role": "user", "content": text}],
            options={"temperature": 0.3, "num_predict": 120},
        )
        summary = r1.message.content or ""
        r2 = self._client.generate(
            model=self.model,
            prompt=STAGE2_PROMPT.format(summary=summary, emotion=emotion),
            options={"temperature": 0.3, "num_predict": 160},
        )
        return {
            "summary": summary,
            "narrative": r2.response,
            "tokens": int(r1.eval_count or 0) + int(r2.eval_count or 0),
        }
