"""Cache settings as value objects: ``CacheSettings`` and ``NamespaceSettings``.

Frozen, keyword-only, built either directly (tests, embedding code) or from the ``cache`` section of
perf_config through ``CacheSettings.from_config(section)``. Nothing downstream reads raw dicts.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = [
    "DEFAULT_COMPRESS_THRESHOLD",
    "DEFAULT_LEASE_TIMEOUT",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MEMORY_BYTES",
    "DEFAULT_MEMORY_ITEMS",
    "DEFAULT_PATH",
    "DEFAULT_SIGNING_KEY_ENV",
    "DEFAULT_STORE_BUDGET",
    "DEFAULT_TTL",
    "CacheSettings",
    "NamespaceSettings",
    "PostgresOptions",
    "RedisOptions",
    "parse_ttl",
]

DEFAULT_PATH = ".perf_cache/cache.db"
DEFAULT_MAX_BYTES = 1024**3
DEFAULT_MEMORY_ITEMS = 10_000
DEFAULT_MEMORY_BYTES = 64 * 1024**2
DEFAULT_TTL = 86_400.0
DEFAULT_TTL_JITTER = 0.05
DEFAULT_COMPRESS_THRESHOLD = 8192
DEFAULT_SIGNING_KEY_ENV = "PERF_CACHE_SIGNING_KEY"
DEFAULT_LEASE_TIMEOUT = 30.0
#: Longest a cached call waits on the L2 store per operation before skipping it (issue 17 item 6). A healthy
#: store answers in 0.01-1 ms (SQLite in-process, Redis / PostgreSQL on a LAN), so 50 ms is 50-5000x a
#: healthy operation and never fires on a working store, even on a loaded machine; yet it is short enough
#: that a store gone wrong costs a call at most a few frames' time, once (then it is skipped).
DEFAULT_STORE_BUDGET = 0.05
DEFAULT_SYNC_INTERVAL = 1.0

_CODECS = ("safe", "pickle")


def parse_ttl(ttl: float | str | None, *, what: str = "ttl") -> float | None:
    """Seconds from a TTL as the API takes it: None (the namespace's TTL), seconds, or a duration string as
    config takes it (``"90s"``, ``"30m"``, ``"1h"``, ``"30d"``); 0 means "never expires".

    Raises ``ValueError`` naming ``what`` for anything else (negative, NaN, a bool, an unknown unit), so a
    bad TTL fails where it is written (``@cached(ttl=...)`` at decoration), never after the work is done.
    """
    if ttl is None or (type(ttl) is float and ttl >= 0.0):  # (inf: never expires, as 0)
        return ttl
    if type(ttl) is int and ttl >= 0:
        return float(ttl)
    from infra.config._units import parse_duration  # (imports infra.config: only for strings and errors)

    try:
        return parse_duration(ttl)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


_BACKENDS = ("sqlite", "memory", "postgres", "redis")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class NamespaceSettings:
    """One namespace: TTL (None: the cache's default), byte cap (None: only the total cap), codec."""

    ttl: float | None = None
    max_bytes: int | None = None
    codec: str = "safe"

    def __post_init__(self) -> None:
        if self.codec not in _CODECS:
            raise ValueError(f"namespace codec must be one of {_CODECS}, got {self.codec!r}")
        if self.ttl is not None and self.ttl < 0:
            raise ValueError(f"namespace ttl must be >= 0 seconds, got {self.ttl!r}")
        if self.max_bytes is not None and self.max_bytes < 0:
            raise ValueError(f"namespace max_bytes must be >= 0, got {self.max_bytes!r}")

    @classmethod
    def from_config(cls, section: Any) -> NamespaceSettings:
        return cls(ttl=section.ttl, max_bytes=section.max_bytes, codec=section.codec)


def _ns_map(value: Mapping[str, NamespaceSettings] | None) -> Mapping[str, NamespaceSettings]:
    return MappingProxyType(dict(value or {}))


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class PostgresOptions:
    """``cache.postgres`` in perf_config: options of the PostgreSQL backend (see ``PostgresBackend``)."""

    table: str = "perf_cache"
    unlogged: bool = False
    max_connections: int = 4
    connect_timeout: float = 2.0
    op_timeout: float = 5.0


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class RedisOptions:
    """``cache.redis`` in perf_config: options of the Redis backend (see ``RedisBackend``)."""

    prefix: str = "perf_cache"
    connect_timeout: float = 1.0
    op_timeout: float = 2.0


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class CacheSettings:
    """Everything the cache needs; defaults mirror config/perf_config.json.

    ``signing_key`` is read from the environment variable ``signing_key_env`` when not given; it never
    appears in ``repr``.
    """

    enabled: bool = True
    backend: str = "sqlite"
    path: str = DEFAULT_PATH
    dsn: str | None = dataclasses.field(default=None, repr=False)
    url: str | None = dataclasses.field(default=None, repr=False)
    postgres: PostgresOptions = dataclasses.field(default_factory=PostgresOptions)
    redis: RedisOptions = dataclasses.field(default_factory=RedisOptions)
    max_bytes: int = DEFAULT_MAX_BYTES
    memory_items: int = DEFAULT_MEMORY_ITEMS
    memory_bytes: int = DEFAULT_MEMORY_BYTES
    default_ttl: float = DEFAULT_TTL
    ttl_jitter: float = DEFAULT_TTL_JITTER
    compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD
    signing_key_env: str = DEFAULT_SIGNING_KEY_ENV
    signing_key: bytes | None = dataclasses.field(default=None, repr=False)
    lease_timeout: float = DEFAULT_LEASE_TIMEOUT
    store_budget: float = DEFAULT_STORE_BUDGET
    namespaces: Mapping[str, NamespaceSettings] = dataclasses.field(default_factory=lambda: _ns_map(None))
    #: module prefixes whose record types a decode may import (see ``infra.cache.codecs``)
    trusted_modules: tuple[str, ...] = ()
    #: longest time another process's delete / set / clear / invalidate goes unseen by this L1 (seconds)
    sync_interval: float = DEFAULT_SYNC_INTERVAL

    def __post_init__(self) -> None:
        if self.backend not in _BACKENDS:
            raise ValueError(f"cache backend must be one of {_BACKENDS}, got {self.backend!r}")
        if not 0 <= self.ttl_jitter <= 1:
            raise ValueError(f"ttl_jitter must be within [0, 1], got {self.ttl_jitter!r}")
        for name in ("max_bytes", "memory_items", "memory_bytes", "compress_threshold"):
            if getattr(self, name) < 0:
                raise ValueError(f"cache {name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.store_budget <= 10:
            raise ValueError(f"store_budget must be within (0, 10] seconds, got {self.store_budget!r}")
        if not self.sync_interval > 0:
            raise ValueError(f"sync_interval must be > 0 seconds, got {self.sync_interval!r}")
        if self.lease_timeout <= 0:
            raise ValueError(f"lease_timeout must be > 0 seconds, got {self.lease_timeout!r}")
        if not isinstance(self.namespaces, MappingProxyType):
            object.__setattr__(self, "namespaces", _ns_map(self.namespaces))
        if self.signing_key is None:
            env = os.environ.get(self.signing_key_env)
            if env:
                object.__setattr__(self, "signing_key", env.encode("utf-8"))

    @classmethod
    def from_config(cls, section: Any, *, enabled: bool = True) -> CacheSettings:
        """Build from ``PerfConfig.cache`` (``enabled`` is the top-level switch, ANDed in)."""
        return cls(
            enabled=bool(enabled and section.enabled),
            backend=section.backend,
            path=section.path,
            dsn=section.dsn,
            url=section.url,
            postgres=PostgresOptions(**section.postgres.to_dict(redact=False)),
            redis=RedisOptions(**section.redis.to_dict(redact=False)),
            max_bytes=section.max_bytes,
            memory_items=section.memory_items,
            memory_bytes=section.memory_bytes,
            default_ttl=section.default_ttl,
            ttl_jitter=section.ttl_jitter,
            compress_threshold=section.compress_threshold,
            signing_key_env=section.signing_key_env,
            lease_timeout=section.lease_timeout,
            store_budget=section.store_budget,
            namespaces={k: NamespaceSettings.from_config(v) for k, v in section.namespaces.items()},
            trusted_modules=tuple(section.trusted_modules),
            sync_interval=section.sync_interval,
        )

    def namespace(self, name: str) -> NamespaceSettings:
        """Settings of one namespace; unknown names get the defaults."""
        ns = self.namespaces.get(name)
        return ns if ns is not None else NamespaceSettings()

    def ttl_for(self, name: str) -> float:
        ttl = self.namespace(name).ttl
        return self.default_ttl if ttl is None else ttl
