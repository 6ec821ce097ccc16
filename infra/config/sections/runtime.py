"""Settings of the asyncpg pool (infra.db), torch threads, micro-batching and warming
(infra.inference, infra.hotpath)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from infra.config._spec import field
from infra.config.sections._base import _Section

__all__ = ["BatchingConfig", "DbConfig", "TorchConfig", "WarmupConfig"]


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
