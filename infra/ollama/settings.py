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
    "physical_cores",
]

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_KEEP_ALIVE = 1800.0
DEFAULT_TIMEOUT = 120.0
DEFAULT_CONNECT_TIMEOUT = 5.0
#: ``"auto"`` for num_thread means this machine's physical cores (what Ollama itself would pick), resolved
#: once when the settings are built, so every call sends the same value (a differing one reloads the model).
DEFAULT_RUNNER: Mapping[str, Any] = MappingProxyType({"num_thread": "auto", "num_ctx": 4096})
DEFAULT_PROFILES: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "stage1": MappingProxyType({"num_predict": 120, "temperature": 0.3}),
        "stage2": MappingProxyType({"num_predict": 160, "temperature": 0.3}),
    }
)
_REPLAY = ("instant", "paced")


def physical_cores() -> int:
    """Physical cores this process may use: psutil when installed, else Linux's /proc/cpuinfo (distinct
    (physical id, core id) pairs), capped by the CPU affinity; ``os.cpu_count()`` where neither tells."""
    import os

    try:
        logical = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        logical = os.cpu_count() or 1
    phys: int | None = None
    try:
        import psutil

        phys = psutil.cpu_count(logical=False)
    except Exception:
        try:
            pairs = set()
            pid = core = ""
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
                for line in f:
                    name, _, value = line.partition(":")
                    name = name.strip()
                    if name == "physical id":
                        pid = value.strip()
                    elif name == "core id":
                        core = value.strip()
                        pairs.add((pid, core))
            phys = len(pairs) or None
        except OSError:
            phys = None
    return max(1, min(logical, phys or logical))


def _resolve_runner(runner: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in runner.items():
        if isinstance(v, Mapping):
            out[k] = _resolve_runner(v)
        elif k == "num_thread" and v == "auto":
            out[k] = physical_cores()
        else:
            out[k] = v
    return out


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

    ``runner`` holds load-time options sent with every call that leaves them out (a caller's own value is
    always sent as given): flat keys apply to every model, a nested mapping under a model name overrides them
    for that model (``{"num_ctx": 4096, "nomic-embed-text": {"num_ctx": 8192}}``); ``num_thread: "auto"`` is
    this machine's physical cores. ``keep_alive`` likewise fills only a call that has none.
    ``profiles`` are named sampling-option sets picked per call with ``profile="stage1"``.
    ``timeout`` bounds connect and each read (the official client's default is no timeout at all,
    ollama-python#483); ``retries`` applies only before the first byte/token of a reply.
    ``$OLLAMA_HOST``, when set, wins over ``host`` (as with the official client); then ``DEFAULT_HOST``.
    ``resolve_digests`` reads /api/tags once per host per process (after the first cacheable reply, never
    before a request) and tags each entry with its model's digest; an entry from another digest is a miss.
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
        object.__setattr__(self, "runner", _frozen(_resolve_runner(self.runner)))
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
