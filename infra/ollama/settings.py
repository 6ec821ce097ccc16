"""Settings for the tuned Ollama client: frozen keyword-only value objects from perf_config's ``ollama``.

Durations are float seconds (``keep_alive`` may also be an Ollama duration string such as ``"30m"``). Nothing
downstream reads raw config dicts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_KEEP_ALIVE",
    "DEFAULT_PROFILES",
    "DEFAULT_RUNNER",
    "DEFAULT_TIMEOUT",
    "OllamaCacheSettings",
    "OllamaSettings",
]

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_KEEP_ALIVE = 1800.0
DEFAULT_TIMEOUT = 120.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_RUNNER: Mapping[str, Any] = MappingProxyType({"num_thread": 6, "num_ctx": 4096})
DEFAULT_PROFILES: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "stage1": MappingProxyType({"num_predict": 120, "temperature": 0.3}),
        "stage2": MappingProxyType({"num_predict": 160, "temperature": 0.3}),
    }
)
_REPLAY = ("instant", "paced")


def _frozen(m: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if m is None:
        return MappingProxyType({})
    return MappingProxyType({k: _frozen(v) if isinstance(v, Mapping) else v for k, v in m.items()})


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class OllamaCacheSettings:
    """Which calls are cached, where, and how a cached stream is replayed (``instant`` or ``paced``)."""

    generate: bool = True
    chat: bool = True
    embed: bool = True
    only_deterministic: bool = False
    namespace: str = "inference"
    embed_namespace: str = "embeddings"
    replay: str = "instant"

    def __post_init__(self) -> None:
        if self.replay not in _REPLAY:
            raise ValueError(f"ollama.cache.replay must be one of {_REPLAY}, got {self.replay!r}")
        if not self.namespace or not self.embed_namespace:
            raise ValueError("ollama.cache.namespace and embed_namespace must be non-empty")

    @classmethod
    def from_config(cls, section: Any) -> OllamaCacheSettings:
        return cls(
            generate=section.generate,
            chat=section.chat,
            embed=section.embed,
            only_deterministic=section.only_deterministic,
            namespace=section.namespace,
            embed_namespace=section.embed_namespace,
            replay=section.replay,
        )


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class OllamaSettings:
    """Tuning for :class:`~infra.ollama.OptimizedOllama`.

    ``runner`` pins load-time options: flat keys apply to every model, a nested mapping under a model name
    overrides them for that model (``{"num_ctx": 4096, "nomic-embed-text": {"num_ctx": 8192}}``).
    ``profiles`` are named sampling-option sets picked per call with ``profile="stage1"``.
    ``timeout`` bounds connect and each read (the official client's default is no timeout at all,
    ollama-python#483); ``retries`` applies only before the first byte/token of a reply.
    ``$OLLAMA_HOST``, when set, wins over ``host`` (as with the official client); then ``DEFAULT_HOST``.
    ``resolve_digests`` reads /api/tags once per client so keys carry each model's digest.
    ``write_behind`` stores cache entries from a background thread, off the call's path (a client still
    reads its own writes at once); ``close()``/``flush()`` wait for them.
    """

    enabled: bool = True
    host: str | None = None
    keep_alive: float | str | None = DEFAULT_KEEP_ALIVE
    timeout: float | None = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    retries: int = 2
    retry_backoff: float = 0.1
    max_concurrency: int = 4
    strict_runner: bool = False
    runner: Mapping[str, Any] = dataclasses.field(default_factory=lambda: DEFAULT_RUNNER)
    profiles: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=lambda: DEFAULT_PROFILES)
    cache: OllamaCacheSettings = dataclasses.field(default_factory=OllamaCacheSettings)
    resolve_digests: bool = True
    write_behind: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.timeout is not None and self.timeout <= 0:
            problems.append(f"timeout must be > 0 seconds or None, got {self.timeout!r}")
        if self.connect_timeout <= 0:
            problems.append(f"connect_timeout must be > 0 seconds, got {self.connect_timeout!r}")
        if self.retries < 0:
            problems.append(f"retries must be >= 0, got {self.retries!r}")
        if self.retry_backoff < 0:
            problems.append(f"retry_backoff must be >= 0, got {self.retry_backoff!r}")
        if self.max_concurrency < 1:
            problems.append(f"max_concurrency must be >= 1, got {self.max_concurrency!r}")
        for name, prof in self.profiles.items():
            if not isinstance(prof, Mapping):
                problems.append(f"profiles.{name} must be a mapping of options, got {type(prof).__name__}")
        if problems:
            raise ValueError("invalid OllamaSettings: " + "; ".join(problems))
        object.__setattr__(self, "runner", _frozen(self.runner))
        object.__setattr__(self, "profiles", _frozen(self.profiles))

    @classmethod
    def from_config(cls, section: Any) -> OllamaSettings:
        """Build from ``PerfConfig.ollama`` (see config/perf_config.json).

        ``connect_timeout``, ``retry_backoff``, ``resolve_digests`` and ``write_behind`` are read when the
        config has them (proposed keys) and keep their defaults otherwise.
        """
        optional = {
            name: getattr(section, name)
            for name in ("connect_timeout", "retry_backoff", "resolve_digests", "write_behind")
            if getattr(section, name, None) is not None
        }
        return cls(
            **optional,
            enabled=section.enabled,
            host=section.host,
            keep_alive=section.keep_alive,
            timeout=section.timeout,
            retries=section.retries,
            max_concurrency=section.max_concurrency,
            strict_runner=section.strict_runner,
            runner=section.runner,
            profiles=section.profiles,
            cache=OllamaCacheSettings.from_config(section.cache),
        )
