"""A seed-004-like enrichment workload: reflections through two LLM stages and an embedding (no I/O here
beyond the client it is given).

Stage 1 (``/api/generate``, profile ``stage1``) names the emotions in a reflection as JSON; stage 2
(``/api/chat``, profile ``stage2``) writes an insight from the reflection and stage 1's answer; then the
reflection is embedded. Reflections repeat, as they do in a real journaling pipeline (re-processing after a
schema change, duplicates across sessions), which is where the cache pays.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra.metrics import timed

__all__ = ["REFLECTIONS", "StageTimes", "build_items", "run_pass"]

REFLECTIONS = (
    "Walked by the river after work and felt the tension in my shoulders finally let go.",
    "Argued with my sister about the holidays again; I am tired of being the one who gives in.",
    "Got the feedback on my project today. Better than I feared, but I still doubt myself.",
    "Could not sleep. Kept replaying the conversation with my manager and what I should have said.",
    "Cooked dinner with friends. Laughed more than I have in weeks.",
    "The anniversary of dad's passing. Quiet day, looked at old photos, grateful and sad at once.",
    "Started running again. Only two kilometres, but I kept the promise I made to myself.",
    "Felt invisible in the team meeting; nobody picked up my idea until someone else repeated it.",
    "Spent the afternoon in the garden. Hands in the soil, mind finally quiet.",
    "My friend cancelled again at the last minute. I said it was fine. It was not fine.",
    "Finished the book I started in spring. Proud of small, steady progress.",
    "Anxious about the move next month; so many boxes, so many goodbyes.",
)

STAGE1_SYSTEM = "You analyse journal reflections. Answer with JSON: emotion, intensity (0-1), summary."
STAGE2_SYSTEM = "You are a warm, concise coach. Offer one insight and one gentle question."


def build_items(n: int) -> list[str]:
    """``n`` reflections cycling through the sample set, so every one repeats once n > len(REFLECTIONS)."""
    return [REFLECTIONS[i % len(REFLECTIONS)] for i in range(n)]


@dataclass
class StageTimes:
    """Latencies (seconds) of one pass, per stage and per item, and the pass's wall time."""

    stage1: list[float] = field(default_factory=list)
    stage2: list[float] = field(default_factory=list)
    embed: list[float] = field(default_factory=list)
    item: list[float] = field(default_factory=list)
    wall: float = 0.0


async def _one(llm: Any, text: str, llm_model: str, embed_model: str, times: StageTimes) -> None:
    # Timed under seed 004's stage names, as a worker would: get_stats() and /dashboard show them.
    t0 = time.perf_counter()
    async with timed("stage1_emotion_scoring"):
        r1 = await llm.generate(llm_model, text, system=STAGE1_SYSTEM, format="json", profile="stage1")
    t1 = time.perf_counter()
    messages = [
        {"role": "system", "content": STAGE2_SYSTEM},
        {"role": "user", "content": f"Reflection: {text}\nAnalysis: {r1.response}"},
    ]
    async with timed("stage2_insight_generation"):
        await llm.chat(llm_model, messages, profile="stage2")
    t2 = time.perf_counter()
    async with timed("embedding"):
        await llm.embed(embed_model, text)
    t3 = time.perf_counter()
    times.stage1.append(t1 - t0)
    times.stage2.append(t2 - t1)
    times.embed.append(t3 - t2)
    times.item.append(t3 - t0)


async def run_pass(
    llm: Any,
    items: list[str],
    *,
    llm_model: str,
    embed_model: str,
    concurrency: int,
    progress: Callable[[], None] | None = None,
) -> StageTimes:
    """Process ``items`` with at most ``concurrency`` in flight (the worker's own pool size)."""
    times = StageTimes()
    sem = asyncio.Semaphore(concurrency)

    async def worker(text: str) -> None:
        async with sem:
            await _one(llm, text, llm_model, embed_model, times)
        if progress is not None:
            progress()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in items))
    times.wall = time.perf_counter() - t0
    return times
