"""Settings of the asyncpg pool (infra.db), torch threads, micro-batching and warming
(infra.inference, infra.hotpath)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import TypedDict

from infra.config._spec import field
from infra.config.sections._base import _Section

__all__ = ["WORKLOADS", "BatchingConfig", "DbConfig", "TorchConfig", "WarmupConfig"]

# Seed 003, "Tuning Guidelines": (min_size, max_size, max_idle seconds) per workload.
WORKLOADS: Mapping[str, tuple[int, int, float]] = MappingProxyType(
    {
        "light": (1, 5, 600.0),  # < 10 req/s
        "medium": (2, 10, 300.0),  # 10-50 req/s (the shipped defaults)
        "heavy": (5, 20, 120.0),  # > 50 req/s
    }
)


class PoolOptions(TypedDict):
    """``DbConfig.pool_kwargs()``: the keywords ``asyncpg.create_pool`` takes from the section."""

    min_size: int
    max_size: int
    max_inactive_connection_lifetime: float
    command_timeout: float | None
    statement_cache_size: int
    server_settings: dict[str, str] | None


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class DbConfig(_Section):
    dsn: str | None = field("str", None, "asyncpg DSN (else $DATABASE_URL).", nullable=True, secret=True)
    min_size: int = field("int", 2, "Warm connections kept.", minimum=0)
    max_size: int = field("int", 10, "Pool ceiling.", minimum=1)
    max_inactive_connection_lifetime: float = field("duration", 300.0, "Idle connections closed after this.")
    command_timeout: float | None = field(
        "duration", 30.0, "Default per-query timeout (null: none, asyncpg's own default).", nullable=True
    )
    statement_cache_size: int = field(
        "int", 100, "asyncpg prepared-statement cache (0 behind pgbouncer).", minimum=0
    )
    server_settings: Mapping[str, str] = field("map", {}, "PostgreSQL settings per connection.", item="str")

    def for_workload(self, workload: str) -> DbConfig:
        """A copy with seed 003's pool sizes for ``"light"``, ``"medium"`` or ``"heavy"``."""
        try:
            lo, hi, idle = WORKLOADS[workload]
        except KeyError:
            raise ValueError(f"unknown workload {workload!r}; expected one of {sorted(WORKLOADS)}") from None
        return dataclasses.replace(self, min_size=lo, max_size=hi, max_inactive_connection_lifetime=idle)

    def resolved_dsn(self) -> str | None:
        """The DSN to use: this one, else ``$DATABASE_URL``; None lets asyncpg use libpq's PG* variables."""
        return self.dsn or os.environ.get("DATABASE_URL") or None

    def problems(self) -> list[tuple[str, str]]:
        """What asyncpg would refuse, every problem at once, as ``(field, message)``: the one check that
        the config loader (which reports them at ``db.<field>``) and ``pool_kwargs`` share."""
        problems: list[tuple[str, str]] = []
        if self.min_size < 0:
            problems.append(("min_size", f"must be >= 0, got {self.min_size}"))
        if self.max_size < 1:
            problems.append(("max_size", f"must be >= 1, got {self.max_size}"))
        if self.min_size > self.max_size:
            problems.append(
                ("min_size", f"must not exceed db.max_size ({self.max_size}), got {self.min_size}")
            )
        if self.max_inactive_connection_lifetime < 0:
            problems.append(("max_inactive_connection_lifetime", "must be >= 0 (0 keeps idle connections)"))
        if self.command_timeout is not None and self.command_timeout <= 0:
            problems.append(("command_timeout", f"must be > 0 seconds or null, got {self.command_timeout}"))
        if self.statement_cache_size < 0:
            problems.append(("statement_cache_size", "must be >= 0 (0 behind pgbouncer in transaction mode)"))
        return problems

    def pool_kwargs(self) -> PoolOptions:
        """Keyword arguments for ``asyncpg.create_pool`` (the DSN excluded); ``ValueError`` naming every
        problem when asyncpg would refuse them."""
        problems = self.problems()
        if problems:
            raise ValueError("invalid db settings: " + "; ".join(f"db.{f}: {m}" for f, m in problems))
        return {
            "min_size": self.min_size,
            "max_size": self.max_size,
            "max_inactive_connection_lifetime": float(self.max_inactive_connection_lifetime),
            "command_timeout": None if self.command_timeout is None else float(self.command_timeout),
            "statement_cache_size": self.statement_cache_size,
            "server_settings": {str(k): str(v) for k, v in self.server_settings.items()} or None,
        }


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
