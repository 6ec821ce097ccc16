"""Settings of the pooled retrying HTTP client (infra.http): the ``http`` section."""

from __future__ import annotations

import dataclasses
import random
from typing import TypeVar

from infra.config._spec import field
from infra.config.sections._base import _Section

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRY_STATUSES",
    "BreakerConfig",
    "HttpCacheConfig",
    "HttpConfig",
    "RetryBudgetConfig",
    "RetryConfig",
    "TimeoutConfig",
]


#: Methods RFC 9110 §9.2.2 calls idempotent (TRACE left out: nobody retries it on purpose).
IDEMPOTENT_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: Statuses worth another try: the request may succeed later (RFC 9110 §15, RFC 8470 for 425).
RETRY_STATUSES: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})


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

    # When and how long to wait before trying again (urllib3's Retry is the model: the policy is a value,
    # the history is kept by the caller). Connect errors are always retried (nothing reached the server);
    # retry statuses and read errors only for idempotent methods or requests carrying an Idempotency-Key.
    # A server's Retry-After replaces the backoff when ``respect_retry_after``; asking for more than
    # ``max_retry_after`` (or more than the deadline leaves) fails at once with RetryAfterTooLong.

    @property
    def max_tries(self) -> int:
        """The first try plus every retry."""
        return self.attempts + 1

    def backoff_for(self, retry: int, rng: random.Random | None = None) -> float:
        """Sleep before retry number ``retry`` (1-based), jittered and capped; past the end of ``backoff``
        the last entry is tripled each time."""
        if self.backoff:
            i = retry - 1
            n = len(self.backoff)
            base = self.backoff[i] if i < n else self.backoff[-1] * 3.0 ** (i - n + 1)
        else:
            base = 0.0
        if self.jitter and base:
            base *= 1.0 + (rng or random).uniform(-self.jitter, self.jitter)
        return min(base, self.max_backoff)

    def retry_after_jitter(self, retry: int, rng: random.Random | None = None) -> float:
        """Extra wait added on top of a server's Retry-After: uniform in [0, jitter x backoff step), so
        clients told the same wait don't come back in lockstep."""
        if not self.jitter or not self.backoff:
            return 0.0
        i = retry - 1
        step = self.backoff[i] if i < len(self.backoff) else self.backoff[-1]
        return min((rng or random).uniform(0.0, self.jitter * step), self.max_backoff)

    def may_retry_request(self, method: str, idempotent: bool) -> bool:
        """Whether a status or read failure may be retried for this request (connect errors always may)."""
        return idempotent or method in IDEMPOTENT_METHODS


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
    unkeyed_headers: tuple[str, ...] = field(
        "list",
        (),
        "Request headers left out of the cache key besides the built-in list (per-request ids).",
        item="str",
    )


# The layer's connection limits (HttpConfig's defaults) and what a plain ``aiohttp.ClientSession()`` has
# instead (TCPConnector limit=100, limit_per_host=0; ClientTimeout total=300, sock_connect=30): with
# ``enabled: false`` a setting still at the layer's default takes the plain client's (``effective``).
_LAYER_MAX_CONNECTIONS = 16
_LAYER_MAX_PER_HOST = 6
_PLAIN_MAX_CONNECTIONS = 100
_PLAIN_TOTAL = 300.0
_PLAIN_CONNECT = 30.0
_LAYER_KEEPALIVE = 30.0
_PLAIN_KEEPALIVE = 15.0  # aiohttp's TCPConnector keepalive_timeout


_N = TypeVar("_N", int, float)


def _plain(value: _N, layer_default: _N, plain: _N) -> _N:
    return plain if value == layer_default else value


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class HttpConfig(_Section):
    enabled: bool = field("bool", True, "Retries, breakers and metrics on (off: a plain pooled client).")
    backend: str = field(
        "str",
        "aiohttp",
        "Async backend: aiohttp (pure Python), httpx, or pyreqwest (native: the perf-infra[native] extra; "
        "it carries http2_hosts too).",
        choices=("aiohttp", "httpx", "pyreqwest"),
    )
    http2_backend: str = field(
        "str",
        "auto",
        "What carries HTTP/2 origins where backend is aiohttp (which has no HTTP/2) in the async client: "
        "pyreqwest (native: the perf-infra[native] extra), httpx (+ h2, pure Python), or auto: pyreqwest "
        "where it is installed, else httpx. The sync client speaks HTTP/2 over httpx.",
        choices=("auto", "httpx", "pyreqwest"),
    )
    http2: bool = field("bool", False, "Speak HTTP/2 to every origin, not only http2_hosts.")
    http2_hosts: tuple[str, ...] = field(
        "list",
        (),
        "Hosts (host or host:port) spoken to over HTTP/2: prior knowledge over http://, offered by ALPN "
        "over https:// (a TLS host keeps HTTP/1.1's limits until it answers over HTTP/2, and for good if it "
        "declines).",
        item="str",
    )
    metrics: bool = field("bool", True, "Record per-origin request metrics.")
    max_connections: int = field("int", _LAYER_MAX_CONNECTIONS, "Connection limit in all.", minimum=1)
    max_per_host: int = field("int", _LAYER_MAX_PER_HOST, "Connection limit per host.", minimum=1)
    http2_max_streams: int = field(
        "int",
        100,
        "Calls in flight at once to one HTTP/2 origin in the async client: streams multiplexed over its one "
        "connection (the connection limits count connections, as aiohttp's and httpx's do); at most 16 over "
        "httpx + h2.",
        minimum=1,
    )
    keepalive_expiry: float = field(
        "duration", _LAYER_KEEPALIVE, "Idle pooled connections are closed after this."
    )
    timeout: TimeoutConfig = field("section", TimeoutConfig, "Timeouts.", section=TimeoutConfig)
    retry: RetryConfig = field("section", RetryConfig, "Retry policy.", section=RetryConfig)
    retry_budget: RetryBudgetConfig = field(
        "section", RetryBudgetConfig, "Per-host retry budget.", section=RetryBudgetConfig
    )
    breaker: BreakerConfig = field(
        "section", BreakerConfig, "Per-host circuit breaker.", section=BreakerConfig
    )
    cache: HttpCacheConfig = field("section", HttpCacheConfig, "Response caching.", section=HttpCacheConfig)

    def problems(self) -> list[tuple[str, str]]:
        """The rule between fields: a host can't have more connections than the pool holds."""
        if self.max_per_host > self.max_connections:
            return [
                (
                    "max_per_host",
                    f"must not exceed http.max_connections ({self.max_connections}), got {self.max_per_host}",
                )
            ]
        return []

    def effective(self) -> HttpConfig:
        """What the client runs with: itself, or with ``enabled: false`` the plain client.

        Off, the client is what a plain ``aiohttp.ClientSession()`` would be, behind the same API: one try
        per call (no retries, budget, breaker, metrics or response cache; aiohttp's own silent resend of
        an idempotent request on a dropped keep-alive connection is back), and where a limit or timeout
        still has the layer's default it takes aiohttp's instead, so the off switch adds no failure the
        plain client wouldn't have: 100 connections with no tighter per-host limit, idle connections kept
        15 s, DNS answers cached 10 s (``_aiohttp_pool.make_session``), a 300 s deadline, a 30 s connect
        timeout, and no pool, first-byte or idle limit short of the deadline. A value you set yourself
        (one that differs from the layer's default) stays. What stays whatever the switch: the
        ``Response`` type, failing statuses returned not raised, redirects not followed, no cookie jar
        (one client serves many callers), and the ``User-Agent: perf-infra/...`` header.
        """
        if self.enabled:
            return self
        t, layer = self.timeout, TimeoutConfig()
        total = _plain(t.total, layer.total, _PLAIN_TOTAL)
        phase = total if total is not None else _PLAIN_TOTAL  # no phase limit short of the deadline
        max_connections = _plain(self.max_connections, _LAYER_MAX_CONNECTIONS, _PLAIN_MAX_CONNECTIONS)
        return dataclasses.replace(
            self,
            max_connections=max_connections,
            max_per_host=_plain(self.max_per_host, _LAYER_MAX_PER_HOST, max_connections),
            keepalive_expiry=_plain(self.keepalive_expiry, _LAYER_KEEPALIVE, _PLAIN_KEEPALIVE),
            timeout=dataclasses.replace(
                t,
                total=total,
                connect=_plain(t.connect, layer.connect, _PLAIN_CONNECT),
                pool=_plain(t.pool, layer.pool, phase),
                first_byte=_plain(t.first_byte, layer.first_byte, phase),
                idle=_plain(t.idle, layer.idle, phase),
            ),
            retry=dataclasses.replace(self.retry, attempts=0),
            retry_budget=dataclasses.replace(self.retry_budget, enabled=False),
            breaker=dataclasses.replace(self.breaker, enabled=False),
            cache=dataclasses.replace(self.cache, enabled=False),
            metrics=False,
        )
