"""Settings of the tuned Ollama client (infra.ollama): the ``ollama`` section, THE client's settings.

``OptimizedOllama(config.ollama)`` takes it as loaded; ``OptimizedOllama(settings=OllamaConfig(timeout=10))``
builds one in code, checked by the same Specs the loader uses (every problem named at once, as a
:class:`~infra.errors.ConfigError`) and normalised as the loader would (durations in seconds, maps frozen).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TypeAlias

from infra.config._spec import field
from infra.config.sections._base import _Section

__all__ = ["OllamaCacheConfig", "OllamaConfig", "OllamaOption", "RunnerOption"]

OllamaOption: TypeAlias = str | int | float | bool | Sequence[str]
"""One Ollama option's value, as ``ollama.Options`` has them (``num_ctx`` 4096, ``temperature`` 0.3,
``stop`` a list of strings, given as a tuple once the section is built) or as the layer reads them
(``num_thread`` ``"auto"``: this machine's physical cores)."""

RunnerOption: TypeAlias = OllamaOption | Mapping[str, OllamaOption]
"""One entry of ``runner``: an option for every model, or a model's own options
(``{"llama3.1:8b": {"num_ctx": 8192}}``)."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class OllamaCacheConfig(_Section):
    generate: bool = field("bool", True, "Cache /api/generate responses.")
    chat: bool = field("bool", True, "Cache /api/chat responses.")
    embed: bool = field("bool", True, "Cache embeddings per input text.")
    only_deterministic: bool = field("bool", False, "Cache only temperature 0 or fixed-seed calls.")
    namespace: str = field("str", "inference", "Namespace for generate / chat.", pattern=".")
    embed_namespace: str = field("str", "embeddings", "Namespace for embeddings.", pattern=".")
    replay: str = field(
        "str",
        "instant",
        "Replay of cached streams: instant, or paced at the recorded cadence.",
        choices=("instant", "paced"),
    )


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class OllamaConfig(_Section):
    enabled: bool = field(
        "bool", True, "Tuning and caching in OptimizedOllama (off: the plain official client)."
    )
    host: str = field("str", "http://127.0.0.1:11434", "Ollama server.")
    keep_alive: float | None = field(
        "duration",
        1800.0,
        "How long Ollama keeps a model loaded, sent when a call has none (null: send none).",
        nullable=True,
    )
    timeout: float = field(
        "duration", 120.0, "Request timeout (the official client has none).", minimum=0.001
    )
    connect_timeout: float = field(
        "duration", 5.0, "TCP connect timeout to the Ollama server.", minimum=0.001
    )
    retry_backoff: float = field("duration", 0.1, "First backoff step of a retry before the first token.")
    resolve_digests: bool = field(
        "bool", True, "Read /api/tags once so cache keys carry each model's digest."
    )
    write_behind: bool = field(
        "bool", True, "Store cache entries from a background thread, off the call's path."
    )
    retries: int = field("int", 2, "Retries before the first token.", minimum=0, maximum=10)
    max_concurrency: int = field("int", 4, "Concurrent requests; match OLLAMA_NUM_PARALLEL.", minimum=1)
    strict_runner: bool = field(
        "bool", False, "Raise when a call's runner option differs from the pinned one (else log once)."
    )
    runner: Mapping[str, RunnerOption] = field(
        "map",
        {"num_thread": "auto", "num_ctx": 4096},
        "Runner options sent when a call leaves them out (num_thread auto: physical cores).",
        item="scalar",
    )
    profiles: Mapping[str, Mapping[str, OllamaOption]] = field(
        "map",
        {
            "stage1": {"num_predict": 120, "temperature": 0.3},
            "stage2": {"num_predict": 160, "temperature": 0.3},
        },
        "Named sets of sampling options.",
        item="options",
    )
    cache: OllamaCacheConfig = field(
        "section", OllamaCacheConfig, "Response caching.", section=OllamaCacheConfig
    )
