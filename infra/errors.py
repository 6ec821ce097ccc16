"""The layer's exceptions: one root, so callers can catch everything the layer itself raises.

::

    PerfInfraError
    ├── ConfigError                 bad perf_config.json / environment; lists every problem at once
    ├── CacheError                  a cache backend failed (counted, never surfaced by wrapped calls)
    │   └── CacheCorruptError       the store failed an integrity check and was quarantined
    ├── HTTPError                   raised by AsyncPerfClient / PerfClient
    │   ├── TransportError          connect / read / reset, after retries ran out
    │   │   └── PoolTimeout         no pooled connection came free in time
    │   ├── HTTPStatusError         a final response with a failing status (raise_for_status)
    │   ├── DeadlineExceeded        the one deadline of a logical call ran out
    │   │   └── RetryAfterTooLong   the server asked to wait past the deadline; carries retry_after
    │   ├── CircuitOpenError        the host's breaker is open; no I/O was done
    │   └── RetryBudgetExhausted    the host's retry budget denied a retry
    ├── OllamaRunnerError           a call would change pinned runner options (strict_runner)
    ├── DatabaseConnectError        create_pool couldn't open its first connections (also a ConnectionError)
    ├── BackpressureError           a bounded queue (MicroBatcher, AudioStreamSender) is full
    └── WrapError                   a ``wrap`` entry names a target or method that doesn't exist

The HTTP classes live in ``infra.http`` (each carries ``history``, the attempts made; ``RetryAfterTooLong``
carries ``retry_after`` and ``response``; ``CircuitOpenError`` carries ``retry_in``).

Backend exceptions (aiohttp, httpx, sqlite3, asyncpg, redis) are mapped at the boundary with
``raise ... from exc`` so the original stays reachable as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BackpressureError",
    "CacheCorruptError",
    "CacheError",
    "ConfigError",
    "ConfigProblem",
    "DatabaseConnectError",
    "OllamaRunnerError",
    "PerfInfraError",
    "WrapError",
]


class PerfInfraError(Exception):
    """Root of every exception the layer raises on its own account."""


class ConfigProblem:
    """One problem found in the configuration: where (a JSON path or file:line:col) and what."""

    __slots__ = ("message", "where")

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message

    def __repr__(self) -> str:
        return f"ConfigProblem({self.where!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfigProblem) and (self.where, self.message) == (other.where, other.message)

    def __hash__(self) -> int:
        return hash((self.where, self.message))


class ConfigError(PerfInfraError, ValueError):
    """The configuration is invalid. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: Sequence[ConfigProblem] | str, *, source: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [ConfigProblem("", problems)]
        self.problems: list[ConfigProblem] = list(problems)
        self.source = source
        head = f"invalid configuration ({source})" if source else "invalid configuration"
        if len(self.problems) == 1:
            text = f"{head}: {self.problems[0]}"
        else:
            text = head + ":\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)


class CacheError(PerfInfraError):
    """A cache backend failed. Wrapped calls never see this: the cache fails open."""


class CacheCorruptError(CacheError):
    """The cache store failed an integrity check; it was moved aside and a fresh one created."""


class OllamaRunnerError(PerfInfraError):
    """A call would change a model's pinned runner options (and reload it) while ``strict_runner`` is on."""


class DatabaseConnectError(PerfInfraError, ConnectionError):
    """``create_pool`` could not open its first connections; the message names the (redacted) DSN and the
    reason, and the asyncpg / OS exception is the ``__cause__``."""


class BackpressureError(PerfInfraError):
    """A bounded queue is full; the caller should slow down or shed load."""


class WrapError(PerfInfraError):
    """A ``wrap`` entry in perf_config names a target that doesn't import or a missing method."""
