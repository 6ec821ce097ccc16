"""Settings of the pooled retrying HTTP client (infra.http): the ``http`` section."""

from __future__ import annotations

import dataclasses

from infra.config._spec import field
from infra.config.sections._base import _Section

__all__ = [
    "BreakerConfig",
    "HttpCacheConfig",
    "HttpConfig",
    "RetryBudgetConfig",
    "RetryConfig",
    "TimeoutConfig",
]


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
