"""PerfConfig and its sections: frozen, keyword-only value objects whose attributes mirror perf_config.json.

Durations are float seconds, sizes int bytes, lists tuples, free-form maps read-only mappings. Defaults
here are the built-in defaults, used for any key a file leaves out (the shipped config/perf_config.json
spells every one of them out; a test keeps the two identical).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from infra.config._spec import field, section_fields

__all__ = [
    "BatchingConfig",
    "BreakerConfig",
    "CacheConfig",
    "DbConfig",
    "HttpCacheConfig",
    "HttpConfig",
    "MetricsConfig",
    "NamespaceConfig",
    "OllamaCacheConfig",
    "OllamaConfig",
    "PerfConfig",
    "PostgresCacheConfig",
    "RedisCacheConfig",
    "RetryBudgetConfig",
    "RetryConfig",
    "TimeoutConfig",
    "TorchConfig",
    "WarmupConfig",
    "WrapEntry",
]

_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*:)[^@/]*@")
#: a password passed as a parameter: ``?password=`` / ``&sslpassword=`` in a URL's query (libpq and asyncpg
#: read both), or ``password=...`` in a libpq key/value DSN (quoted or not)
_PASSWORD_PARAM = re.compile(
    r"(?P<head>(?:^|[?&;\s])(?:ssl)?pass(?:word|wd)?\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|[^&#;\s]*)",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """Hide every password in a DSN / URL: ``postgresql://u:secret@h/db`` → ``postgresql://u:***@h/db``,
    ``...?password=secret&x=1`` → ``...?password=***&x=1``, ``host=h password=secret`` →
    ``host=h password=***``; anything else unchanged."""
    url = _PASSWORD_IN_URL.sub(r"\g<head>***@", url)
    return _PASSWORD_PARAM.sub(r"\g<head>***", url)


class _Section:
    """Shared behaviour of every section: a repr that hides secrets, and a JSON-ready ``to_dict``."""

    __slots__ = ()

    def __repr__(self) -> str:
        parts = []
        for name, spec in section_fields(type(self)):
            value = getattr(self, name)
            if spec.secret and isinstance(value, str):
                value = redact_url(value)
            parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """Plain JSON types: sections become dicts, durations stay seconds, secrets redacted by default."""
        out: dict[str, Any] = {}
        for name, spec in section_fields(type(self)):
            out[name] = _plain(getattr(self, name), redact=redact, secret=spec.secret)
        return out


def _plain(value: Any, *, redact: bool, secret: bool = False) -> Any:
    if isinstance(value, _Section):
        return value.to_dict(redact=redact)
    if isinstance(value, Mapping):
        return {k: _plain(v, redact=redact) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v, redact=redact) for v in value]
    if redact and secret and isinstance(value, str):
        return redact_url(value)
    return value


# --------------------------------------------------------------------------------------------- cache
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
        "str", ".perf_cache/cache.db", "SQLite file; its directory is created 0700, the file 0600."
    )
    dsn: str | None = field("str", None, "PostgreSQL DSN for backend postgres.", nullable=True, secret=True)
    url: str | None = field("str", None, "Redis URL for backend redis.", nullable=True, secret=True)
    postgres: PostgresCacheConfig = field(
        "section", PostgresCacheConfig, "Options of backend postgres.", section=PostgresCacheConfig
    )
    redis: RedisCacheConfig = field(
        "section", RedisCacheConfig, "Options of backend redis.", section=RedisCacheConfig
    )
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
        0.05,
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


# ---------------------------------------------------------------------------------------------- http
@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class TimeoutConfig(_Section):
    connect: float = field("duration", 5.0, "TCP + TLS connect timeout.")
    total: float = field(
        "duration", 60.0, "One deadline for a logical call: pool wait, every attempt, the sleeps."
    )
    pool: float = field("duration", 10.0, "Longest wait for a free pooled connection.")
    first_byte: float = field("duration", 30.0, "Time to the response's first byte.")
    idle: float = field("duration", 30.0, "Longest gap between two chunks of a streamed body.")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class RetryConfig(_Section):
    attempts: int = field(
        "int",
        3,
        "Retries after the first try (3: up to 4 tries, one backoff step before each retry).",
        minimum=0,
        maximum=20,
    )
    backoff: tuple[float, ...] = field(
        "list", (0.1, 0.3, 0.9), "Sleep before each retry (seconds); the last repeats.", item="duration"
    )
    jitter: float = field("float", 0.2, "± fraction of random jitter on each sleep.", minimum=0, maximum=1)
    max_backoff: float = field("duration", 10.0, "Cap on any one sleep.")
    respect_retry_after: bool = field("bool", True, "Honour Retry-After / retry-after-ms from the server.")
    max_retry_after: float = field("duration", 60.0, "Cap on a server-requested wait.")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class RetryBudgetConfig(_Section):
    enabled: bool = field(
        "bool", True, "Cap retries per host so a failing upstream sees ~1.2x the load, not 4x."
    )
    ratio: float = field("float", 0.2, "Retries allowed per request, per host.", minimum=0, maximum=10)
    per_second: float = field(
        "float", 10.0, "Retries per second: a floor under the ratio, not added to it.", minimum=0
    )


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class BreakerConfig(_Section):
    enabled: bool = field("bool", True, "Per-host circuit breaking.")
    consecutive_failures: int = field("int", 5, "Open after this many failures in a row.", minimum=1)
    failure_rate: float = field("float", 0.5, "…or this failure rate over the window.", minimum=0, maximum=1)
    min_requests: int = field("int", 20, "Requests in the window before the rate counts.", minimum=1)
    window: float = field("duration", 10.0, "Window for the failure rate.")
    cooldown: float = field("duration", 30.0, "Open time before half-open probes.")
    half_open_probes: int = field("int", 1, "Probe requests let through when half-open.", minimum=1)
    adaptive: bool = field(
        "bool", False, "Adapt consecutive_failures to the host's recent success rate (seed 001 PERF-010)."
    )
    min_consecutive: int = field("int", 3, "Lowest adaptive consecutive-failure threshold.", minimum=1)
    max_consecutive: int = field("int", 10, "Highest adaptive consecutive-failure threshold.", minimum=1)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class HttpCacheConfig(_Section):
    enabled: bool = field("bool", False, "Cache GET responses, and POSTs to deterministic routes.")
    namespace: str = field("str", "http", "Cache namespace for responses.")
    ttl: float = field("duration", 86400.0, "TTL of cached responses.")
    deterministic_routes: tuple[str, ...] = field(
        "list", (), "URL prefixes (origin + path) whose POST responses depend only on the body.", item="str"
    )


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class HttpConfig(_Section):
    enabled: bool = field("bool", True, "Retries, breakers and metrics on (off: a plain pooled client).")
    backend: str = field("str", "aiohttp", "Async backend.", choices=("aiohttp", "httpx"))
    http2_hosts: tuple[str, ...] = field(
        "list", (), "Hosts (host or host:port) spoken to over HTTP/2.", item="str"
    )
    max_connections: int = field("int", 16, "Connection limit in all.", minimum=1)
    max_per_host: int = field("int", 6, "Connection limit per host.", minimum=1)
    keepalive_expiry: float = field("duration", 30.0, "Idle pooled connections are closed after this.")
    timeout: TimeoutConfig = field("section", TimeoutConfig, "Timeouts.", section=TimeoutConfig)
    retry: RetryConfig = field("section", RetryConfig, "Retry policy.", section=RetryConfig)
    retry_budget: RetryBudgetConfig = field(
        "section", RetryBudgetConfig, "Per-host retry budget.", section=RetryBudgetConfig
    )
    breaker: BreakerConfig = field(
        "section", BreakerConfig, "Per-host circuit breaker.", section=BreakerConfig
    )
    cache: HttpCacheConfig = field("section", HttpCacheConfig, "Response caching.", section=HttpCacheConfig)


# -------------------------------------------------------------------------------------------- ollama
@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class OllamaCacheConfig(_Section):
    generate: bool = field("bool", True, "Cache /api/generate responses.")
    chat: bool = field("bool", True, "Cache /api/chat responses.")
    embed: bool = field("bool", True, "Cache embeddings per input text.")
    only_deterministic: bool = field("bool", False, "Cache only temperature 0 or fixed-seed calls.")
    namespace: str = field("str", "inference", "Namespace for generate / chat.")
    embed_namespace: str = field("str", "embeddings", "Namespace for embeddings.")
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
    timeout: float = field("duration", 120.0, "Request timeout (the official client has none).")
    connect_timeout: float = field("duration", 5.0, "TCP connect timeout to the Ollama server.")
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
    runner: Mapping[str, Any] = field(
        "map",
        {"num_thread": "auto", "num_ctx": 4096},
        "Runner options sent when a call leaves them out (num_thread auto: physical cores).",
        item="scalar",
    )
    profiles: Mapping[str, Mapping[str, Any]] = field(
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


# ------------------------------------------------------------------------------------------- metrics
@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class MetricsConfig(_Section):
    enabled: bool = field("bool", True, "Record metrics.")
    serve: bool = field("bool", False, "Serve /metrics in a background thread when infra.enable() runs.")
    host: str = field("str", "127.0.0.1", "Bind address of /metrics (loopback unless you mean otherwise).")
    port: int = field("port", 9464, "Port of /metrics (0: any free port).", minimum=0, maximum=65535)
    token_env: str = field("str", "PERF_METRICS_TOKEN", "Environment variable with an optional bearer token.")
    max_series_per_metric: int = field("int", 2000, "Cardinality guard per metric.", minimum=1)


# ------------------------------------------------------------------------------------- db, torch ...
@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class DbConfig(_Section):
    dsn: str | None = field("str", None, "asyncpg DSN (else $DATABASE_URL).", nullable=True, secret=True)
    min_size: int = field("int", 2, "Warm connections kept.", minimum=0)
    max_size: int = field("int", 10, "Pool ceiling.", minimum=1)
    max_inactive_connection_lifetime: float = field("duration", 300.0, "Idle connections closed after this.")
    command_timeout: float = field("duration", 30.0, "Default per-query timeout.")
    statement_cache_size: int = field(
        "int", 100, "asyncpg prepared-statement cache (0 behind pgbouncer).", minimum=0
    )
    server_settings: Mapping[str, Any] = field("map", {}, "PostgreSQL settings per connection.", item="str")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class TorchConfig(_Section):
    enabled: bool = field("bool", True, "Apply the thread budget in infra.enable().")
    num_threads: int | None = field(
        "int",
        None,
        "torch intra-op threads (null: cores left after Ollama's num_thread).",
        nullable=True,
        minimum=1,
    )
    interop_threads: int = field("int", 1, "torch inter-op threads.", minimum=1)
    reserve_for_ollama: bool = field("bool", True, "Leave ollama.runner.num_thread cores to a local Ollama.")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class BatchingConfig(_Section):
    enabled: bool = field("bool", True, "Dynamic micro-batching of local model calls.")
    max_batch_size: int = field("int", 32, "Items per batched call.", minimum=1)
    max_wait_ms: float = field(
        "float", 2.0, "Longest wait for company after the first queued item (ms).", minimum=0
    )
    max_queue: int = field("int", 1024, "Queued items before BackpressureError.", minimum=1)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class WarmupConfig(_Section):
    enabled: bool = field("bool", False, "Warm models and caches in the background at enable().")
    delay: float = field("duration", 5.0, "Wait before warming so start-up isn't slowed.")
    concurrency: int = field("int", 4, "Concurrent warming calls.", minimum=1)
    models: tuple[str, ...] = field("list", (), "Ollama models to load and keep warm.", item="str")
    system_prompt: str | None = field(
        "str", None, "System prompt to warm the prompt path with.", nullable=True
    )


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class WrapEntry(_Section):
    target: str = field(
        "str", "", "Class to wrap, as package.module:Class.", pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"
    )
    methods: tuple[str, ...] = field("list", (), "Methods whose results are cached.", item="str")
    namespace: str | None = field("str", None, "Cache namespace (default: the class name).", nullable=True)
    ttl: float | None = field("duration", None, "TTL (default: the namespace's).", nullable=True)
    version: str | None = field("str", None, "Bump to drop entries made by older code.", nullable=True)
    include_self: bool = field(
        "bool", False, "Kept for compatibility: instances are keyed by their configuration by default."
    )
    key_attrs: tuple[str, ...] | None = field(
        "list",
        None,
        "Instance attributes (dotted paths allowed) that define the results; null: the instance's "
        "configuration (public attributes and constructor settings, clients/locks/loggers skipped); "
        "[]: instances share entries.",
        item="str",
        nullable=True,
    )


# ---------------------------------------------------------------------------------------------- root
@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class PerfConfig(_Section):
    enabled: bool = field("bool", True, "Master switch: false makes every part a pass-through.")
    cache: CacheConfig = field("section", CacheConfig, "Content-addressed cache.", section=CacheConfig)
    http: HttpConfig = field("section", HttpConfig, "Pooled retrying HTTP client.", section=HttpConfig)
    ollama: OllamaConfig = field(
        "section", OllamaConfig, "Tuned, caching Ollama client.", section=OllamaConfig
    )
    metrics: MetricsConfig = field(
        "section", MetricsConfig, "Metrics registry and /metrics.", section=MetricsConfig
    )
    db: DbConfig = field("section", DbConfig, "asyncpg pool.", section=DbConfig)
    torch: TorchConfig = field("section", TorchConfig, "torch thread budget.", section=TorchConfig)
    batching: BatchingConfig = field(
        "section", BatchingConfig, "Dynamic micro-batching.", section=BatchingConfig
    )
    warmup: WarmupConfig = field("section", WarmupConfig, "Background warming.", section=WarmupConfig)
    wrap: tuple[WrapEntry, ...] = field(
        "list",
        (),
        "Classes whose methods get cached by enable_caching_for_worker().",
        item="section",
        section=WrapEntry,
    )
    source: str | None = dataclasses.field(default=None, compare=False, metadata={"spec": None})

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        out = {"$schema": "perf_config.schema.json"}
        out.update(
            _Section.to_dict(self, redact=redact)
        )  # slots=True rebuilds the class: no zero-arg super()
        return out
