"""The cache values of Ollama replies (no I/O): their shapes, what may be stored, and how a reply is built
again from one.

A full reply is stored as ``{"v": 2, "full": <model_dump>, "d": <digest>}``, a stream as ``{"v": 2,
"chunks": [...], "t": [offsets], "d": <digest>}``, one embedding as ``{"e": [vector], "d": <digest>,
"m": <reply fields, when it was fetched alone>}``. ``d`` is the model's digest when the value was stored; a
value without it (an older shape) is a miss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._embed_fields import reply_fields, summed_prompt_eval_count

if TYPE_CHECKING:
    from ._core import Plan

__all__ = [
    "decode_full",
    "decode_stream",
    "embed_response",
    "fill_vectors",
    "full_value",
    "split_found",
    "storable",
    "stream_value",
    "tagged",
    "vector_value",
]

_STORABLE = ("stop", "length")


def storable(final: Any) -> bool:
    """Only complete replies: done with stop or length. Errors, aborts and load/unload never."""
    return bool(getattr(final, "done", False)) and getattr(final, "done_reason", None) in _STORABLE


def full_value(resp: Any, digest: str | None) -> dict[str, Any]:
    return {"v": 2, "full": resp.model_dump(exclude_unset=True), "d": digest}


def stream_value(chunks: list[dict[str, Any]], offsets: list[float], digest: str | None) -> dict[str, Any]:
    return {"v": 2, "chunks": chunks, "t": offsets, "d": digest}


def vector_value(vector: Any, digest: str | None) -> dict[str, Any]:
    return {"e": list(vector), "d": digest}


def tagged(value: Any) -> bool:
    """A value of this version's shape (anything else is a miss)."""
    return type(value) is dict and "d" in value


def decode_full(cls: Any, value: Any) -> Any:
    """A stored non-streamed reply, built as the official client builds one; None for another shape."""
    full = value.get("full") if type(value) is dict else None
    return cls(**full) if type(full) is dict else None


def decode_stream(value: Any) -> tuple[list[dict[str, Any]], list[float]] | None:
    if type(value) is dict and "chunks" in value and "t" in value:
        return value["chunks"], value["t"]
    return None


def split_found(
    plan: Plan, found: Mapping[str, Any], digest: str | None
) -> tuple[dict[str, list[float]], list[tuple[str, str]]]:
    """Embed: the cached vectors by text (copies: the caller may mutate them, the L1 entry must not
    change) and the (text, key) pairs still to fetch."""
    vectors: dict[str, list[float]] = {}
    missing: list[tuple[str, str]] = []
    assert plan.items is not None
    for text, k in plan.items:
        v = found.get(k)
        if type(v) is dict and v.get("d") == digest and isinstance(v.get("e"), list):
            vectors[text] = list(v["e"])
            if type(v.get("m")) is dict:
                plan.meta[text] = v["m"]
        else:
            missing.append((text, k))
    return vectors, missing


def fill_vectors(
    vectors: dict[str, Any],
    missing: list[tuple[str, str]],
    resp: Any,
    digest: str | None,
    plan: Plan | None = None,
) -> dict[str, Any]:
    """Embed: put the fetched vectors in ``vectors``; return the cache entries to store (and note on
    ``plan`` what was fetched and recorded, for ``embed_response``)."""
    out: dict[str, Any] = {}
    # A text fetched on its own owns the whole reply: its fields (prompt_eval_count, durations, ...) are
    # recorded with the vector, so a hit replays what the plain client got. A text fetched in a batch
    # can't know its share of the reply's counts, so nothing is recorded for it.
    meta = reply_fields(resp) if len(missing) == 1 else None
    if plan is not None:
        plan.fetched = [text for text, _ in missing]
    for (text, k), v in zip(missing, resp.embeddings, strict=True):
        vectors[text] = v
        out[k] = vector_value(v, digest)
        if meta:
            out[k]["m"] = meta
            if plan is not None:
                plan.meta[text] = meta
    return out


def embed_response(cls: Any, plan: Plan, vectors: Mapping[str, Any], resp: Any) -> Any:
    """Embed: the reply in the caller's input order.

    One text, served from the cache: every field recorded with it (see ``fill_vectors``), as the plain
    client got them. Reassembled from several entries (or from entries and a fetch): the durations are
    this call's fetch's (none when nothing was fetched: no timing belongs to the whole), and
    ``prompt_eval_count`` is the sum over the inputs when each input's count is known (Ollama counts
    each input's tokens and adds them), else left out."""
    fields: dict[str, Any] = {
        "model": resp.model if resp is not None else plan.model,
        "embeddings": [vectors[t] for t in plan.texts],
    }
    if resp is None and len(plan.texts) == 1 and plan.texts[0] in plan.meta:
        return cls.model_construct(**{**plan.meta[plan.texts[0]], **fields})
    if resp is not None:
        for name in ("total_duration", "load_duration"):
            if getattr(resp, name, None) is not None:
                fields[name] = getattr(resp, name)
    count = summed_prompt_eval_count(plan.texts, plan.meta, plan.fetched, resp)
    if count is not None:
        fields["prompt_eval_count"] = count
    return cls.model_construct(**fields)
