"""Settings of the content-addressed cache (infra.cache): the ``cache`` section of perf_config.json."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from infra.config._spec import field, subsection
from infra.config.sections._base import _Section, loading

__all__ = [
    "DEFAULT_STORE_BUDGET",
    "CacheConfig",
    "NamespaceConfig",
    "PostgresCacheConfig",
    "RedisCacheConfig",
]

#: Longest a cached call waits on the L2 store per operation before skipping it (issue 17 item 6). A healthy
#: store answers in 0.01-1 ms (SQLite in-process, Redis / PostgreSQL on a LAN), so 50 ms is 50-5000x a
#: healthy operation and never fires on a working store, even on a loaded machine; yet it is short enough
#: that a store gone wrong costs a call at most a few frames' time, once (then it is skipped). The backends'
#: constructors default to it too.
DEFAULT_STORE_BUDGET = 0.05


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class NamespaceConfig(_Section):
    ttl: float | None = field("duration", None, "Time to live; null uses cache.default_ttl.", nullable=True)
    max_bytes: int | None = field(
        "size", None, "Byte cap for this namespace; null: only the total cap.", nullable=True
    )
    codec: str = field(
        "str",
        "safe",
        "Value codec: 'safe' (no pickle) or 'pickle' (HMAC-signed, needs the signing key).",
        choices=("safe", "pickle"),
    )


with loading():  # built while infra.config imports, before the check it would run is importable
    _DEFAULT_NAMESPACES = {
        "inference": NamespaceConfig(ttl=30 * 86400.0),
        "embeddings": NamespaceConfig(ttl=30 * 86400.0),
        "api": NamespaceConfig(ttl=86400.0),
        "http": NamespaceConfig(ttl=86400.0),
        "search": NamespaceConfig(ttl=300.0),
        "tts": NamespaceConfig(ttl=30 * 86400.0),
    }


_IDENTIFIER = r"^[a-z_][a-z0-9_]{0,39}$"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class PostgresCacheConfig(_Section):
    table: str = field(
        "str", "perf_cache", "Table name prefix (tables <prefix>_entries, ...).", pattern=_IDENTIFIER
    )
    unlogged: bool = field(
        "bool", False, "Create the tables UNLOGGED: faster writes, emptied by a server crash."
    )
    max_connections: int = field("int", 4, "Connections per event loop.", minimum=1)
    connect_timeout: float = field("duration", 2.0, "Connect timeout; past it the call runs uncached.")
    op_timeout: float = field(
        "duration", 5.0, "Longest a statement may run before the connection is dropped (fail open)."
    )


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class RedisCacheConfig(_Section):
    prefix: str = field("str", "perf_cache", "Key prefix (keys <prefix>:...).", pattern=_IDENTIFIER)
    connect_timeout: float = field("duration", 1.0, "Connect timeout; past it the call runs uncached.")
    op_timeout: float = field("duration", 2.0, "Per-command timeout; past it the call runs uncached.")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class CacheConfig(_Section):
    enabled: bool = field("bool", True, "Switch the cache on or off (off: every cached call runs uncached).")
    backend: str = field(
        "str",
        "sqlite",
        "Where entries live: sqlite (one machine), postgres or redis (shared), memory (L1 only).",
        choices=("sqlite", "postgres", "redis", "memory"),
    )
    path: str = field(
        "str",
        ".perf_cache/cache.db",
        "SQLite file; its directory is created 0700, the file 0600. Relative to the project root when read "
        "from a config file (the folder holding config/ for a file in config/, else the file's folder), "
        "to the working directory for $PERF_CACHE_PATH and the built-in defaults.",
    )
    dsn: str | None = field("str", None, "PostgreSQL DSN for backend postgres.", nullable=True, secret=True)
    url: str | None = field("str", None, "Redis URL for backend redis.", nullable=True, secret=True)
    postgres: PostgresCacheConfig = subsection(PostgresCacheConfig, "Options of backend postgres.")
    redis: RedisCacheConfig = subsection(RedisCacheConfig, "Options of backend redis.")
    max_bytes: int = field(
        "size", 1024**3, "Total byte cap of the L2 store; least recently used entries go first."
    )
    memory_items: int = field("int", 10000, "L1 (in-process LRU) item cap; 0 disables L1.", minimum=0)
    memory_bytes: int = field("size", 64 * 1024**2, "L1 byte cap.")
    default_ttl: float = field("duration", 86400.0, "TTL for namespaces that set none.")
    ttl_jitter: float = field(
        "float",
        0.05,
        "Fraction of the TTL added at random so entries written together don't expire together.",
        minimum=0,
        maximum=1,
    )
    compress_threshold: int = field("size", 8192, "Values larger than this are zlib-compressed.")
    signing_key_env: str = field(
        "str", "PERF_CACHE_SIGNING_KEY", "Environment variable holding the HMAC key for signed values."
    )
    lease_timeout: float = field(
        "duration", 30.0, "Cross-process single-flight lease; a dead holder blocks no longer."
    )
    store_budget: float = field(
        "duration",
        DEFAULT_STORE_BUDGET,
        "Longest a cached call waits on the L2 store (per operation: a hung, refused, slow or locked store);"
        " past it the store is skipped (fail open) until it answers again.",
        minimum=0.001,
        maximum=10.0,
    )
    trusted_modules: tuple[str, ...] = field(
        "list",
        (),
        "Module prefixes whose dataclasses / models / enums a cache read may import to rebuild a stored "
        "value (pydantic, ollama and langchain_core are built in; modules already imported always are).",
        item="str",
    )
    sync_interval: float = field(
        "duration",
        1.0,
        "Longest time a delete, set, clear or invalidate made by another process (or the CLI) goes unseen "
        "by this process's in-memory L1.",
        minimum=0.01,
    )
    namespaces: Mapping[str, NamespaceConfig] = field(
        "section_map", _DEFAULT_NAMESPACES, "Per-namespace settings.", section=NamespaceConfig
    )

    def namespace(self, name: str) -> NamespaceConfig:
        """Settings of one namespace (unknown names get the defaults)."""
        return self.namespaces.get(name) or NamespaceConfig()

    def ttl_for(self, name: str) -> float:
        """The effective TTL of a namespace in seconds."""
        ttl = self.namespace(name).ttl
        return self.default_ttl if ttl is None else ttl

    def signing_key(self) -> bytes | None:
        """The HMAC key for signed values: the variable ``signing_key_env`` names, read now; None if unset.
        (A key is never a config value: it would land in files and reprs.)"""
        env = os.environ.get(self.signing_key_env)
        return env.encode("utf-8") if env else None
