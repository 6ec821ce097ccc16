"""What an embed reply served from the cache says besides its vectors (no I/O).

A text embedded on its own owns the whole reply, so its entry records the reply's other fields and a hit
replays them. A reply reassembled from several entries can only sum what each input's entry knows: Ollama
counts each input's tokens and adds them, so ``prompt_eval_count`` is exact when every share is known;
durations belong to no reassembled reply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["reply_fields", "summed_prompt_eval_count"]


def reply_fields(resp: Any) -> dict[str, Any]:
    """An embed reply's fields other than the vectors and the model, None values left out."""
    dump = getattr(resp, "model_dump", None)
    if dump is None:
        return {}
    try:
        data = dump(exclude={"embeddings", "model"})
    except Exception:  # a reply type of another shape: record nothing rather than fail the call
        return {}
    return {k: v for k, v in data.items() if v is not None and type(v) in (str, int, float, bool)}


def summed_prompt_eval_count(
    texts: Sequence[str], meta: Mapping[str, Mapping[str, Any]], fetched: Sequence[str], resp: Any
) -> int | None:
    """The reassembled reply's prompt_eval_count: the recorded count of each cached text (``meta``), plus
    the fetch's own count for the texts it covered together (``fetched``, answered by ``resp``); None when
    any share is unknown."""
    counts = {t: m.get("prompt_eval_count") for t, m in meta.items()}
    batch = [t for t in fetched if type(counts.get(t)) is not int]  # fetched together, no own count
    total = 0
    for text in texts:
        c = counts.get(text)
        if type(c) is int:
            total += c
        elif text not in batch:
            return None  # a cached text whose count was never known
    if batch:
        fetched_count = getattr(resp, "prompt_eval_count", None)
        if type(fetched_count) is not int or sum(t in batch for t in texts) != len(batch):
            return None  # no count, or a batch text repeated in the input: its own share is unknown
        total += fetched_count
    return total
