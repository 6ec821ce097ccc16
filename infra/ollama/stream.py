"""Streams: record a reply's chunks and their timing while they pass, replay them later from the cache.

A hit replays the stored chunks as the same pydantic types, at once (``instant``) or at the recorded cadence
(``paced``: the first chunk at once, each later one at its recorded offset from the first, scheduled against
absolute deadlines so sleep overshoot doesn't accumulate).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

__all__ = ["StreamRecorder", "areplay", "pacing", "replay", "replay_delays"]


class StreamRecorder:
    """Collects a streamed reply's chunks and their offsets (seconds since the call began) while they pass.

    With ``record=False`` (the call isn't cacheable) it only counts chunks and keeps the final one. ``ttft``,
    when given, observes the time to the first chunk.
    """

    __slots__ = ("chunks", "final", "n", "offsets", "record", "t0", "ttft")

    def __init__(self, t0: float, ttft: Any = None, *, record: bool = True) -> None:
        self.t0 = t0
        self.ttft = ttft
        self.record = record
        self.n = 0
        self.chunks: list[dict[str, Any]] = []
        self.offsets: list[float] = []
        self.final: Any = None

    def add(self, part: Any) -> None:
        if not self.n and self.ttft is not None:
            self.ttft.observe(time.perf_counter() - self.t0)
        self.n += 1
        if self.record:
            self.offsets.append(time.perf_counter() - self.t0)
            self.chunks.append(part.model_dump(exclude_unset=True))
        if getattr(part, "done", False):
            self.final = part


def replay_delays(offsets: Iterable[float]) -> list[float]:
    """Offsets relative to the first chunk: paced replay sends chunk i at start + delays[i]."""
    offs = list(offsets)
    if not offs:
        return []
    first = offs[0]
    return [max(0.0, t - first) for t in offs]


def pacing(offsets: list[float]) -> Iterator[float]:
    """Paced replay: the wait before each chunk, the time left until its deadline (start + its delay),
    computed as each chunk comes up, from the start of the replay."""
    start = time.perf_counter()
    for d in replay_delays(offsets):
        yield start + d - time.perf_counter()


def replay(cls: Any, decoded: tuple[list[dict[str, Any]], list[float]], paced: bool) -> Iterator[Any]:
    """A stored stream's chunks as ``cls``: at once (the hot path: nothing but validation), or paced."""
    chunks, offsets = decoded
    return _paced(cls, chunks, offsets) if paced else (cls.model_validate(c) for c in chunks)


def _paced(cls: Any, chunks: list[dict[str, Any]], offsets: list[float]) -> Iterator[Any]:
    for c, wait in zip(chunks, pacing(offsets), strict=False):
        if wait > 0:
            time.sleep(wait)
        yield cls.model_validate(c)


def areplay(cls: Any, decoded: tuple[list[dict[str, Any]], list[float]], paced: bool) -> AsyncIterator[Any]:
    """``replay`` for the async client."""
    chunks, offsets = decoded
    return _apaced(cls, chunks, offsets) if paced else _instant(cls, chunks)


async def _instant(cls: Any, chunks: list[dict[str, Any]]) -> AsyncIterator[Any]:
    for c in chunks:
        yield cls.model_validate(c)


async def _apaced(cls: Any, chunks: list[dict[str, Any]], offsets: list[float]) -> AsyncIterator[Any]:
    for c, wait in zip(chunks, pacing(offsets), strict=False):
        if wait > 0:
            await asyncio.sleep(wait)
        yield cls.model_validate(c)
