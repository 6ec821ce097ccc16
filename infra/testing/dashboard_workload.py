"""A small workload touching every kind of series the dashboard draws (for its tests and bench).

``run_workload(tmp_dir)`` drives, through the layer's real public paths and local servers only:
cache hits and misses with compute time saved (``get_or_compute`` and a ``cached_class`` method, which
is also timed as ``Scorer.score``), entries and bytes (the store's gauges), two timed LLM stages (one
failing now and then), HTTP calls to a local ``FaultServer`` (2xx and 5xx, so breaker state, retry
budget and errors exist), and Ollama generate/embed calls against the in-process test server, cached.

It returns what it did itself (``Counts``), so callers can compare what a view shows with it.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Counts", "run_workload"]


@dataclass
class Counts:
    """Calls the workload made, counted by the workload itself."""

    stage_calls: dict[str, int] = field(default_factory=dict)
    stage_errors: dict[str, int] = field(default_factory=dict)
    http_calls: int = 0
    http_errors: int = 0
    ollama_calls: int = 0


class Scorer:
    """A stand-in for a worker's scoring class (wrapped by ``cached_class``)."""

    def score(self, text: str) -> float:
        time.sleep(0.002)  # the "computation" a hit saves
        return float(len(text) % 7) / 7.0


def _slow_answer() -> str:
    time.sleep(0.003)
    return "an answer"


def run_workload(tmp_dir: str | Path, *, rounds: int = 1, ollama: bool = True, http: bool = True) -> Counts:
    """Run every path once per round (~1 s a round); see the module docstring."""
    from infra.cache import Cache, CacheSettings
    from infra.integrate import cached_class
    from infra.metrics import timed

    tmp = Path(tmp_dir)
    counts = Counts()
    cache = Cache(CacheSettings(path=str(tmp / "dashboard-cache.db")), export_metrics=True)
    try:
        scorer_cls: Any = cached_class(Scorer, methods=["score"], namespace="emotion_scoring", cache=cache)
        scorer = scorer_cls()
        texts = [f"reflection {i % 5}" for i in range(20)]  # 5 distinct: 15 hits, 5 misses per first round
        for _ in range(rounds):
            for text in texts:
                scorer.score(text)
            for i in range(12):
                cache.get_or_compute("inference", f"prompt-{i % 4}", _slow_answer)
            for i in range(30):
                stage = "stage1_emotion_scoring" if i % 2 else "stage2_insight_generation"
                counts.stage_calls[stage] = counts.stage_calls.get(stage, 0) + 1
                try:
                    with timed(stage):
                        time.sleep(0.001 + (i % 5) * 0.001)
                        if i % 10 == 3:
                            raise RuntimeError("model returned invalid JSON")
                except RuntimeError:
                    counts.stage_errors[stage] = counts.stage_errors.get(stage, 0) + 1
            if http:
                _http(counts)
            if ollama:
                _ollama(cache, counts)
        cache.get_stats()  # the store's entries/bytes gauges are read from the store here
    finally:
        cache.close()
    return counts


def _http(counts: Counts) -> None:
    from infra.http import HTTPStatusError, PerfClient, RetryPolicy
    from infra.testing.fault_server import FaultServer

    retry = RetryPolicy(attempts=1, backoff=(0.005,), jitter=0.0)
    with FaultServer() as srv, PerfClient(retry=retry) as client:
        for i in range(10):
            counts.http_calls += 1
            if i % 5 == 4:
                counts.http_errors += 1
                with contextlib.suppress(HTTPStatusError):
                    client.get(f"{srv.url}/status/503").raise_for_status()
            else:
                client.get(f"{srv.url}/ok", params={"delay": "0.002"})


def _ollama(cache: Any, counts: Counts) -> None:
    from infra.ollama import OllamaSettings, OptimizedOllama
    from infra.testing.ollama_server import OllamaTestServer, ServerSettings

    llm_model, embed_model = "llama3.2:3b", "nomic-embed-text:latest"
    settings = OllamaSettings(timeout=10.0, retry_backoff=0.01)
    with OllamaTestServer(ServerSettings(models=(llm_model, embed_model), min_tokens=4, max_tokens=8)) as srv:
        llm = OptimizedOllama(srv.url, settings=settings, cache=cache)
        try:
            for i in range(6):
                counts.ollama_calls += 2
                llm.generate(llm_model, f"How do I feel about day {i % 3}?")
                llm.embed(embed_model, f"day {i % 3}")
        finally:
            close = getattr(llm, "close", None)
            if close is not None:
                close()
