"""Settings as immutable value objects, and the I/O-free retry rules both clients share.

Why value objects: tests and callers build them with keywords, without the config file; the JSON loader
only builds these (``from_config``); nothing downstream reads raw dicts. Why pure functions for the
rules: the sync and async clients then repeat only their thin I/O path, and every rule is testable
without a socket (urllib3's ``Retry`` is the model: immutable policy, history kept by the caller).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "IDEMPOTENT_METHODS",
    "RETRY_STATUSES",
    "BreakerSettings",
    "BudgetSettings",
    "CacheSettings",
    "HTTPSettings",
    "Limits",
    "RetryPolicy",
    "Timeouts",
]

#: Methods RFC 9110 §9.2.2 calls idempotent (TRACE left out: nobody retries it on purpose).
IDEMPOTENT_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: Statuses worth another try: the request may succeed later (RFC 9110 §15, RFC 8470 for 425).
RETRY_STATUSES: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Statuses that count as an upstream failure for the breaker. 429 is deliberately absent: the server is
#: healthy and asked us to slow down, which backoff handles; opening the breaker would shed good traffic.
BREAKER_FAILURE_STATUSES: frozenset[int] = frozenset({500, 502, 503, 504})

_NOT_GIVEN: Any = object()


def _get(section: Any, name: str, default: Any = _NOT_GIVEN) -> Any:
    """Read ``name`` from a config section (a frozen dataclass from infra.config, or a plain mapping)."""
    if section is None:
        if default is _NOT_GIVEN:
            raise KeyError(name)
        return default
    if isinstance(section, Mapping):
        if name in section:
            return section[name]
    elif hasattr(section, name):
        return getattr(section, name)
    if default is _NOT_GIVEN:
        raise KeyError(f"config section has no {name!r}")
    return default


def _positive(name: str, value: float | None, *, allow_none: bool = True, allow_zero: bool = False) -> None:
    if value is None:
        if not allow_none:
            raise ValueError(f"{name} must be a number, got None")
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Time limits, in seconds (None: no limit).

    ``total`` is the one deadline of a logical call: pool wait, every attempt and the sleeps between.
    ``connect`` bounds opening one connection; ``pool`` the wait for a free connection slot;
    ``first_byte`` the wait from sending a request to its response headers; ``idle`` the gap between two
    body chunks of a stream.
    """

    connect: float | None = 5.0
    total: float | None = 60.0
    pool: float | None = 10.0
    first_byte: float | None = 30.0
    idle: float | None = 30.0

    def __post_init__(self) -> None:
        for name in ("connect", "total", "pool", "first_byte", "idle"):
            _positive(f"Timeouts.{name}", getattr(self, name))

    @classmethod
    def from_config(cls, section: Any) -> Timeouts:
        return cls(**{n: _get(section, n, getattr(DEFAULT_TIMEOUTS, n)) for n in cls.__slots__})


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Connection limits: at most ``max_connections`` in use in all, ``max_per_host`` per origin."""

    max_connections: int = 16
    max_per_host: int = 6
    keepalive_expiry: float = 30.0

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_per_host < 1:
            raise ValueError(
                f"Limits need max_connections >= 1 and max_per_host >= 1, got "
                f"{self.max_connections} and {self.max_per_host}"
            )

    @classmethod
    def from_config(cls, section: Any) -> Limits:
        return cls(
            max_connections=int(_get(section, "max_connections", 16)),
            max_per_host=int(_get(section, "max_per_host", 6)),
            keepalive_expiry=float(_get(section, "keepalive_expiry", 30.0)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """When and how long to wait before trying again.

    ``attempts`` counts the *retries* after the first try (so 3 means at most 4 tries), one ``backoff``
    entry per retry (past the end the last entry is tripled each time), ``jitter`` a ± fraction applied to
    backoff, ``max_backoff`` a cap on any one sleep. A server's Retry-After (seconds, HTTP-date or
    retry-after-ms) replaces the backoff when ``respect_retry_after``; asking for more than
    ``max_retry_after`` (or more than the deadline leaves) fails at once with RetryAfterTooLong.

    Connect errors are always retried (nothing reached the server). Retry statuses and read errors are
    retried only for idempotent methods or requests carrying an Idempotency-Key. Retry-After is a floor:
    up to ``jitter`` x the backoff step is added so clients don't return in lockstep.
    """

    attempts: int = 3
    backoff: tuple[float, ...] = (0.1, 0.3, 0.9)
    jitter: float = 0.2
    max_backoff: float = 10.0
    respect_retry_after: bool = True
    max_retry_after: float = 60.0
    retry_statuses: frozenset[int] = RETRY_STATUSES
    idempotent_methods: frozenset[str] = IDEMPOTENT_METHODS

    def __post_init__(self) -> None:
        if self.attempts < 0:
            raise ValueError(f"RetryPolicy.attempts must be >= 0, got {self.attempts}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"RetryPolicy.jitter must be in [0, 1), got {self.jitter}")
        if any(b < 0 for b in self.backoff):
            raise ValueError(f"RetryPolicy.backoff entries must be >= 0, got {self.backoff}")
        _positive("RetryPolicy.max_backoff", self.max_backoff, allow_none=False, allow_zero=True)
        _positive("RetryPolicy.max_retry_after", self.max_retry_after, allow_none=False, allow_zero=True)
        object.__setattr__(self, "backoff", tuple(float(b) for b in self.backoff))
        object.__setattr__(self, "retry_statuses", frozenset(self.retry_statuses))
        object.__setattr__(self, "idempotent_methods", frozenset(m.upper() for m in self.idempotent_methods))

    @property
    def max_tries(self) -> int:
        """The first try plus every retry."""
        return self.attempts + 1

    def backoff_for(self, retry: int, rng: random.Random | None = None) -> float:
        """Sleep before retry number ``retry`` (1-based), jittered and capped."""
        if self.backoff:
            i = retry - 1
            base = (
                self.backoff[i]
                if i < len(self.backoff)
                else self.backoff[-1] * 3.0 ** (i - len(self.backoff) + 1)
            )
        else:
            base = 0.0
        if self.jitter and base:
            base *= 1.0 + (rng or random).uniform(-self.jitter, self.jitter)
        return min(base, self.max_backoff)

    def retry_after_jitter(self, retry: int, rng: random.Random | None = None) -> float:
        """Extra wait added on top of a server's Retry-After: uniform in [0, jitter x backoff step)."""
        if not self.jitter or not self.backoff:
            return 0.0
        i = retry - 1
        step = self.backoff[i] if i < len(self.backoff) else self.backoff[-1]
        return min((rng or random).uniform(0.0, self.jitter * step), self.max_backoff)

    def may_retry_request(self, method: str, idempotent: bool) -> bool:
        """Whether a status or read failure may be retried for this request (connect errors always may)."""
        return idempotent or method in self.idempotent_methods

    @classmethod
    def from_config(cls, section: Any) -> RetryPolicy:
        d = DEFAULT_RETRY
        return cls(
            attempts=int(_get(section, "attempts", d.attempts)),
            backoff=tuple(_get(section, "backoff", d.backoff)),
            jitter=float(_get(section, "jitter", d.jitter)),
            max_backoff=float(_get(section, "max_backoff", d.max_backoff)),
            respect_retry_after=bool(_get(section, "respect_retry_after", d.respect_retry_after)),
            max_retry_after=float(_get(section, "max_retry_after", d.max_retry_after)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetSettings:
    """Per-origin retry budget: each request earns ``ratio`` of a retry (exactly: 0.1 is 1/10); when traffic
    is too thin for that, a reserve of ``per_second`` retries a second applies instead (a floor, never added
    on top), so N failing requests make at most N x (1 + ratio) tries."""

    ratio: float = 0.2
    per_second: float = 10.0
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.ratio < 0 or self.per_second < 0:
            raise ValueError(
                f"BudgetSettings needs ratio >= 0 and per_second >= 0, got {self.ratio}, {self.per_second}"
            )

    @classmethod
    def from_config(cls, section: Any) -> BudgetSettings:
        return cls(
            ratio=float(_get(section, "ratio", 0.2)),
            per_second=float(_get(section, "per_second", 10.0)),
            enabled=bool(_get(section, "enabled", True)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerSettings:
    """Per-origin circuit breaker: opens on ``consecutive_failures`` in a row, or on a failure share of at
    least ``failure_rate`` over at least ``min_requests`` within ``window`` seconds; after ``cooldown``
    it lets ``half_open_probes`` probes through, and closes on their success.

    ``adaptive`` (PERF-010): once per window, a success rate above 95% raises the consecutive-failure
    threshold by one (up to ``max_consecutive``), below 80% lowers it (down to ``min_consecutive``), so a
    reliable upstream isn't cut off by a short burst and a flaky one is cut off sooner. Adjustments are
    logged at INFO with the origin."""

    enabled: bool = True
    consecutive_failures: int = 5
    failure_rate: float = 0.5
    min_requests: int = 20
    window: float = 10.0
    cooldown: float = 30.0
    half_open_probes: int = 1
    adaptive: bool = False
    min_consecutive: int = 3
    max_consecutive: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.min_consecutive <= self.max_consecutive:
            raise ValueError(
                f"BreakerSettings needs 1 <= min_consecutive <= max_consecutive, got "
                f"{self.min_consecutive}, {self.max_consecutive}"
            )
        if self.consecutive_failures < 1 or self.min_requests < 1 or self.half_open_probes < 1:
            raise ValueError(
                "BreakerSettings counts (consecutive_failures, min_requests, half_open_probes) must be >= 1"
            )
        if not 0 < self.failure_rate <= 1:
            raise ValueError(f"BreakerSettings.failure_rate must be in (0, 1], got {self.failure_rate}")
        _positive("BreakerSettings.window", self.window, allow_none=False)
        _positive("BreakerSettings.cooldown", self.cooldown, allow_none=False, allow_zero=True)

    @classmethod
    def from_config(cls, section: Any) -> BreakerSettings:
        d = cls()
        return cls(**{n: _get(section, n, getattr(d, n)) for n in cls.__slots__})


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheSettings:
    """Response caching through infra.cache (off by default).

    GETs with a 200 are cached; a POST only when its URL path is listed in ``deterministic_routes`` (the
    same body always gives the same answer: TTS of a text, embeddings), keyed on a hash of the body.
    Every request header is part of the key except a short list known not to change the response
    (``infra.http._caching.UNKEYED_HEADERS``: request ids, trace context, transport headers);
    ``unkeyed_headers`` names more of your own (per-request ids a cache must not split on).
    """

    enabled: bool = False
    namespace: str = "http"
    ttl: float | None = 86400.0
    deterministic_routes: tuple[str, ...] = ()
    unkeyed_headers: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "unkeyed_headers", frozenset(h.lower() for h in self.unkeyed_headers))

    @classmethod
    def from_config(cls, section: Any) -> CacheSettings:
        return cls(
            enabled=bool(_get(section, "enabled", False)),
            namespace=str(_get(section, "namespace", "http")),
            ttl=_get(section, "ttl", 86400.0),
            deterministic_routes=tuple(_get(section, "deterministic_routes", ())),
            unkeyed_headers=frozenset(_get(section, "unkeyed_headers", ())),
        )


DEFAULT_TIMEOUTS = Timeouts()
DEFAULT_LIMITS = Limits()
DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPSettings:
    """Everything a client needs, as one value (built from the ``http`` config section or by keywords).

    ``http2_hosts`` lists hosts (``host`` or ``host:port``) reached over HTTP/2 through httpx + h2;
    ``http2=True`` sends every origin that way. ``backend`` picks AsyncPerfClient's HTTP/1.1 transport:
    "aiohttp" (default, the fast one) or "httpx" (PerfClient always uses httpx).
    """

    timeouts: Timeouts = DEFAULT_TIMEOUTS
    limits: Limits = DEFAULT_LIMITS
    retry: RetryPolicy = DEFAULT_RETRY
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    http2: bool = False
    http2_hosts: tuple[str, ...] = ()
    metrics: bool = True
    backend: str = "aiohttp"

    def __post_init__(self) -> None:
        if self.backend not in ("aiohttp", "httpx"):
            raise ValueError(f"HTTPSettings.backend must be 'aiohttp' or 'httpx', got {self.backend!r}")

    @classmethod
    def passthrough(cls, base: HTTPSettings | None = None) -> HTTPSettings:
        """``enabled: false``: the plain pooled client: no retries, budget, breaker, metrics or caching
        (limits and timeouts stay: a client needs some)."""
        b = base or cls()
        return dataclasses.replace(
            b,
            retry=dataclasses.replace(b.retry, attempts=0),
            budget=dataclasses.replace(b.budget, enabled=False),
            breaker=dataclasses.replace(b.breaker, enabled=False),
            cache=dataclasses.replace(b.cache, enabled=False),
            metrics=False,
        )

    @classmethod
    def from_config(cls, section: Any) -> HTTPSettings:
        """Build from ``get_config().http`` (or an equivalent mapping); ``enabled: false`` gives
        ``passthrough()``."""
        built = cls._build(section)
        return built if _get(section, "enabled", True) else cls.passthrough(built)

    @classmethod
    def _build(cls, section: Any) -> HTTPSettings:
        return cls(
            timeouts=Timeouts.from_config(_get(section, "timeout", None)),
            limits=Limits.from_config(section),
            retry=RetryPolicy.from_config(_get(section, "retry", None)),
            budget=BudgetSettings.from_config(_get(section, "retry_budget", None)),
            breaker=BreakerSettings.from_config(_get(section, "breaker", None)),
            cache=CacheSettings.from_config(_get(section, "cache", None)),
            http2_hosts=tuple(_get(section, "http2_hosts", ())),
            backend=str(_get(section, "backend", "aiohttp")),
        )
