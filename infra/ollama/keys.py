"""Cache keys for Ollama calls (no I/O): what goes in, what stays out, and when a call may be cached.

In: endpoint, model (and its digest when known), prompt / suffix / system / template / context / raw,
messages (images by SHA-256 of their base64 form), tools, format, think, logprobs, and every option that can
change the output (temperature, top_k, top_p, min_p, typical_p, repeat_*, penalties, seed, stop,
num_predict, num_ctx, and any option we don't know, to stay safe). Out: runner-only options (num_thread,
num_batch, num_gpu, use_mmap, ...) and keep_alive, which change speed, not text. The request is
canonicalised as sorted-key JSON and hashed (SHA-256); the prompt never appears in clear in a key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from .runner import RUNNER_ONLY_OPTIONS

__all__ = [
    "KEY_VERSION",
    "chat_fields",
    "generate_fields",
    "is_deterministic",
    "key_options",
    "request_digest",
]

#: Bump when what a cached Ollama response means changes (e.g. a different stored shape).
KEY_VERSION = 1

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode


def key_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The output-affecting options: all but the runner-only ones (unknown options stay in, to be safe)."""
    return {k: v for k, v in options.items() if k not in RUNNER_ONLY_OPTIONS and v is not None}


def is_deterministic(options: Mapping[str, Any]) -> bool:
    """Temperature 0 or a fixed seed: the only calls ``only_deterministic`` lets through the cache."""
    seed = options.get("seed")
    return options.get("temperature") == 0 or (seed is not None and seed != -1)


def _image_hash(image: Any) -> str:
    from ollama import Image

    b64 = image.model_dump() if isinstance(image, Image) else Image(value=image).model_dump()
    return hashlib.sha256(str(b64).encode()).hexdigest()


def _plain(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if dump is not None:
        return dump(exclude_none=True, by_alias=True)
    return obj


def _message(m: Any) -> Any:
    if type(m) is dict and not m.get("images"):
        return m
    d = dict(_plain(m)) if not isinstance(m, Mapping) else dict(m)
    if d.get("images"):
        d["images"] = [_image_hash(i) for i in d["images"]]
    return {
        k: _plain(v) if not isinstance(v, (str, int, float, bool, list, dict)) else v
        for k, v in d.items()
        if v is not None
    }


def _tools(tools: Sequence[Any] | None) -> list[Any] | None:
    if not tools:
        return None
    out = []
    for t in tools:
        if callable(t) and not isinstance(t, Mapping):
            from ollama._utils import convert_function_to_tool

            t = convert_function_to_tool(t)
        out.append(_plain(t))
    return out


def generate_fields(
    *,
    prompt: Any,
    suffix: Any,
    system: Any,
    template: Any,
    context: Any,
    raw: Any,
    fmt: Any,
    images: Any,
    think: Any,
    logprobs: Any,
    top_logprobs: Any,
    stream: bool,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    d: dict[str, Any] = {"prompt": prompt, "stream": stream}
    for k, v in (
        ("suffix", suffix),
        ("system", system),
        ("template", template),
        ("raw", raw),
        ("format", fmt),
        ("think", think),
        ("logprobs", logprobs),
        ("top_logprobs", top_logprobs),
    ):
        if v is not None:
            d[k] = v
    if context:
        d["context"] = list(context)
    if images:
        d["images"] = [_image_hash(i) for i in images]
    if extra:
        d.update({k: v for k, v in extra.items() if v is not None})
    return d


def chat_fields(
    *,
    messages: Sequence[Any] | None,
    tools: Sequence[Any] | None,
    fmt: Any,
    think: Any,
    logprobs: Any,
    top_logprobs: Any,
    stream: bool,
) -> dict[str, Any]:
    d: dict[str, Any] = {"messages": [_message(m) for m in messages or ()], "stream": stream}
    t = _tools(tools)
    if t:
        d["tools"] = t
    for k, v in (("format", fmt), ("think", think), ("logprobs", logprobs), ("top_logprobs", top_logprobs)):
        if v is not None:
            d[k] = v
    return d


def request_digest(
    endpoint: str,
    model: str,
    digest: str | None,
    fields: Mapping[str, Any],
    options: Mapping[str, Any],
    namespace: str = "",
) -> str:
    """The cache key: SHA-256 hex over the namespace, ``KEY_VERSION`` and the canonical request.

    Raises TypeError for values JSON can't represent. (Built here rather than with ``infra.cache.make_key``:
    sorted-key JSON runs in C, which halves the key's share of a miss; the key is just as content-addressed.)
    """
    payload = _dumps(
        ["perf-infra/ollama", KEY_VERSION, namespace, endpoint, model, digest, fields, key_options(options)]
    )
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()
