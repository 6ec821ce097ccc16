"""A stateful worker for the fidelity harness (tests/integrate/test_fidelity.py): several instances with
different settings, a client member, a lock, a logger, an internal counter; results that are dicts and
pydantic models; a method that streams and one that raises. Deterministic, so plain runs can be compared."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator

import ollama
from pydantic import BaseModel

#: how often each method really ran in this process (the harness reads it to see what the cache saved)
COMPUTED: dict[str, int] = {}


def _ran(name: str) -> None:
    COMPUTED[name] = COMPUTED.get(name, 0) + 1


class Analysis(BaseModel):
    text: str
    model: str
    score: float
    tags: list[str]
    detail: dict[str, list[int]]


class FidelityWorker:
    def __init__(self, weight: float = 1.0, model: str = "llama3.2:3b", host: str = "http://127.0.0.1:9"):
        self.weight = weight
        self._model = model
        self._client = ollama.Client(host=host)  # a client member: never part of the key
        self._lock = threading.Lock()
        self.log = logging.getLogger("fidelity")
        self._served = 0  # internal state

    def _digest(self, text: str) -> bytes:
        return hashlib.sha256(f"{self._model}|{text}".encode()).digest()

    def score(self, text: str, *, scale: int = 1) -> dict[str, object]:
        _ran("score")
        with self._lock:
            self._served += 1
        d = self._digest(text)
        return {
            "text": text,
            "model": self._model,
            "value": len(text) * self.weight * scale + d[0] / 256,
            "tokens": text.split(),
            "nested": {"bytes": list(d[:4]), "ok": True, "none": None},
        }

    def analyse(self, text: str) -> Analysis:
        _ran("analyse")
        d = self._digest(text)
        return Analysis(
            text=text,
            model=self._model,
            score=round(d[1] / 255 * self.weight, 6),
            tags=sorted(set(text.split()))[:3],
            detail={"head": list(d[:3])},
        )

    def check(self, text: str) -> dict[str, object]:
        _ran("check")
        if "boom" in text:
            raise ValueError(f"cannot check {text!r} with {self._model}")
        return {"text": text, "ok": True}

    def stream(self, text: str) -> Iterator[dict[str, object]]:
        _ran("stream")
        for i, word in enumerate(text.split()):
            yield {"i": i, "word": word, "w": self.weight}
