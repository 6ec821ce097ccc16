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
from collections.abc import Callable
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


def run_workload(
    tmp_dir: str | Path,
    *,
    rounds: int = 1,
    between_rounds: Callable[[int], None] | None = None,
) -> Counts:
    """Run every path once per round (~1 s a round); see the module docstring.

    Each round repeats some inputs of its own (hits) and brings new ones (misses), against the same
    local servers, so every series grows in every round: a Prometheus ``rate()`` over a window holding
    two rounds has an increase to show. ``between_rounds(n)`` runs after round ``n`` (not the last).
    """
    from infra.cache import Cache, CacheConfig
    from infra.integrate import cached_class

    tmp = Path(tmp_dir)
    counts = Counts()
    with contextlib.ExitStack() as stack:
        cache = Cache(CacheConfig(path=str(tmp / "dashboard-cache.db")), export_metrics=True)
        stack.callback(cache.close)
        scorer_cls: Any = cached_class(Scorer, methods=["score"], namespace="emotion_scoring", cache=cache)
        scorer = scorer_cls()
        http = _Http(stack)
        llm = _Ollama(stack, cache)
        for r in range(rounds):
            for i in range(20):  # 5 distinct texts: 5 misses, 15 hits
                scorer.score(f"reflection {r}-{i % 5}")
            for i in range(12):  # 4 distinct keys: 4 misses, 8 hits
                cache.get_or_compute("inference", f"prompt-{r}-{i % 4}", _slow_answer)
            _stages(counts)
            http.round(counts)
            llm.round(r, counts)
            cache.get_stats()  # the store's entries/bytes gauges are read from the store here
            if between_rounds is not None and r < rounds - 1:
                between_rounds(r)
    return counts


def _stages(counts: Counts) -> None:
    from infra.metrics import timed

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


class _Http:
    """A local FaultServer and a PerfClient to it, for every round (one origin throughout)."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        from infra.http import PerfClient, RetryConfig
        from infra.testing.fault_server import FaultServer

        self.server = stack.enter_context(FaultServer())
        retry = RetryConfig(attempts=1, backoff=(0.005,), jitter=0.0)
        self.client = stack.enter_context(PerfClient(retry=retry))

    def round(self, counts: Counts) -> None:
        from infra.http import HTTPStatusError

        for i in range(10):
            counts.http_calls += 1
            if i % 5 == 4:
                counts.http_errors += 1
                with contextlib.suppress(HTTPStatusError):
                    self.client.get(f"{self.server.url}/status/503").raise_for_status()
            else:
                self.client.get(f"{self.server.url}/ok", params={"delay": "0.002"})


class _Ollama:
    """The in-process Ollama test server and a cached client to it."""

    LLM, EMBED = "llama3.2:3b", "nomic-embed-text:latest"

    def __init__(self, stack: contextlib.ExitStack, cache: Any) -> None:
        from infra.ollama import OllamaConfig, OptimizedOllama
        from infra.testing.ollama_server import OllamaTestServer, ServerSettings

        server = stack.enter_context(
            OllamaTestServer(ServerSettings(models=(self.LLM, self.EMBED), min_tokens=4, max_tokens=8))
        )
        self.llm = OptimizedOllama(
            server.url, settings=OllamaConfig(timeout=10.0, retry_backoff=0.01), cache=cache
        )
        close = getattr(self.llm, "close", None)
        if close is not None:
            stack.callback(close)

    def round(self, r: int, counts: Counts) -> None:
        for i in range(6):  # 3 distinct prompts: 3 misses, 3 hits per operation
            counts.ollama_calls += 2
            self.llm.generate(self.LLM, f"How do I feel about day {r}-{i % 3}?")
            self.llm.embed(self.EMBED, f"day {r}-{i % 3}")
