"""Cache keys for Ollama calls (no I/O): what goes in, what stays out, and when a call may be cached.

A key is built from the request body the official client itself serialized (so it covers exactly what is
sent): endpoint, model, prompt / suffix / system / template / context / raw / images (their base64 form),
messages, tools, format, think, logprobs, stream, and every option that can change the output (temperature,
top_k, top_p, min_p, typical_p, repeat_*, penalties, seed, stop, num_predict, num_ctx, and any option we don't
know, to stay safe). Out: runner-only options (num_thread, num_batch, num_gpu, use_mmap, ...) and keep_alive,
which change speed, not text. The model's digest is not in the key: it tags the stored entry instead
(see :mod:`infra.ollama.digests`), so the first call needs no /api/tags before its request. The request is
canonicalised as sorted-key JSON and hashed (SHA-256); the prompt never appears in clear in a key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .runner import RUNNER_ONLY_OPTIONS

__all__ = ["KEY_VERSION", "NOT_KEYED", "is_deterministic", "key_options", "request_digest"]

#: Bump when what a cached Ollama response means changes (2: keys from the official body, digest tags).
KEY_VERSION = 2

#: Body fields that never reach the key: the model is keyed on its own, options through ``key_options``.
NOT_KEYED = frozenset({"model", "options", "keep_alive"})

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode


def key_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The output-affecting options: all but the runner-only ones (unknown options stay in, to be safe)."""
    return {k: v for k, v in options.items() if k not in RUNNER_ONLY_OPTIONS and v is not None}


def is_deterministic(options: Mapping[str, Any]) -> bool:
    """Temperature 0 or a fixed seed: the only calls ``only_deterministic`` lets through the cache."""
    seed = options.get("seed")
    return options.get("temperature") == 0 or (seed is not None and seed != -1)


def request_digest(
    endpoint: str, model: str, fields: Mapping[str, Any], options: Mapping[str, Any], namespace: str = ""
) -> str:
    """The cache key: SHA-256 hex over the namespace, ``KEY_VERSION`` and the canonical request.

    Raises TypeError for values JSON can't represent. (Built here rather than with ``infra.cache.make_key``:
    sorted-key JSON runs in C, which halves the key's share of a miss; the key is just as content-addressed.)
    """
    payload = _dumps(
        ["perf-infra/ollama", KEY_VERSION, namespace, endpoint, model, fields, key_options(options)]
    )
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()
