"""Hot-path helpers for voice and RAG pipelines.

::

    from infra.hotpath import gather_ordered, take_within_budget, TokenBudget
    from infra.hotpath import AudioFrameTemplate, AudioStreamSender
    from infra.hotpath import TimedMemo, timed_memo, warm, warm_cache

- ``gather_ordered``: independent awaitables at once, results in input order, bounded, cancel or capture.
- ``TokenBudget`` / ``take_within_budget``: take prefetched items in order until a token budget is spent.
- ``AudioFrameTemplate``: the JSON envelope of an audio chunk, precomputed (equals ``json.dumps``).
- ``AudioStreamSender``: a bounded, backpressured WebSocket sender with a clean disconnect on failure.
- ``TimedMemo`` / ``timed_memo``: a TTL + LRU memo for search results; never returns a stale entry.
- ``warm`` / ``warm_cache``: background warming that never blocks start-up.

Only the standard library loads here; ``websockets`` loads when a sender first connects by URL.
"""

from __future__ import annotations

from infra.hotpath.budget import TokenBudget, approx_tokens, take_within_budget
from infra.hotpath.frames import AudioFrameTemplate
from infra.hotpath.gather import gather_ordered
from infra.hotpath.memo import TimedMemo, timed_memo
from infra.hotpath.sender import AudioStreamSender
from infra.hotpath.warm import WarmHandle, WarmStats, run_warm, warm, warm_cache

__all__ = [
    "AudioFrameTemplate",
    "AudioStreamSender",
    "TimedMemo",
    "TokenBudget",
    "WarmHandle",
    "WarmStats",
    "approx_tokens",
    "gather_ordered",
    "run_warm",
    "take_within_budget",
    "timed_memo",
    "warm",
    "warm_cache",
]
