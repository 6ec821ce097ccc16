"""asyncpg pool settings as a value object, with seed 003's workload table as presets."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["WORKLOADS", "DbSettings"]

# Seed 003, "Tuning Guidelines": (min_size, max_size, max_idle seconds) per workload.
WORKLOADS: Mapping[str, tuple[int, int, float]] = MappingProxyType(
    {
        "light": (1, 5, 600.0),  # < 10 req/s
        "medium": (2, 10, 300.0),  # 10-50 req/s (the shipped defaults)
        "heavy": (5, 20, 120.0),  # > 50 req/s
    }
)


def _redact(dsn: str | None) -> str | None:
    if dsn is None:
        return None
    from infra.config import redact_url

    return redact_url(dsn)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class DbSettings:
    """Everything ``create_pool`` passes to ``asyncpg.create_pool``; durations in seconds."""

    dsn: str | None = None
    min_size: int = 2
    max_size: int = 10
    max_inactive_connection_lifetime: float = 300.0
    command_timeout: float | None = 30.0
    statement_cache_size: int = 100
    server_settings: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.min_size < 0:
            problems.append(f"min_size must be >= 0, not {self.min_size}")
        if self.max_size < 1:
            problems.append(f"max_size must be >= 1, not {self.max_size}")
        if self.min_size > self.max_size:
            problems.append(f"min_size ({self.min_size}) must not exceed max_size ({self.max_size})")
        if self.max_inactive_connection_lifetime < 0:
            problems.append("max_inactive_connection_lifetime must be >= 0 (0 keeps idle connections)")
        if self.command_timeout is not None and self.command_timeout <= 0:
            problems.append("command_timeout must be > 0 seconds or None")
        if self.statement_cache_size < 0:
            problems.append("statement_cache_size must be >= 0 (0 behind pgbouncer in transaction mode)")
        if problems:
            raise ValueError("invalid DbSettings: " + "; ".join(problems))
        object.__setattr__(
            self,
            "server_settings",
            MappingProxyType({str(k): str(v) for k, v in self.server_settings.items()}),
        )

    @classmethod
    def from_config(cls, section: Any) -> DbSettings:
        """From ``PerfConfig.db`` (``infra.config.DbConfig``)."""
        return cls(
            dsn=section.dsn,
            min_size=section.min_size,
            max_size=section.max_size,
            max_inactive_connection_lifetime=float(section.max_inactive_connection_lifetime),
            command_timeout=None if section.command_timeout is None else float(section.command_timeout),
            statement_cache_size=section.statement_cache_size,
            server_settings=dict(section.server_settings),
        )

    def for_workload(self, workload: str) -> DbSettings:
        """A copy with seed 003's pool sizes for ``"light"``, ``"medium"`` or ``"heavy"``."""
        try:
            lo, hi, idle = WORKLOADS[workload]
        except KeyError:
            raise ValueError(f"unknown workload {workload!r}; expected one of {sorted(WORKLOADS)}") from None
        return dataclasses.replace(self, min_size=lo, max_size=hi, max_inactive_connection_lifetime=idle)

    def replace(self, **changes: Any) -> DbSettings:
        """A copy with ``changes`` (validated); unknown names raise ``TypeError`` naming them."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"unknown DbSettings field(s) {unknown}; known: {sorted(names)}")
        return dataclasses.replace(self, **changes)

    def resolved_dsn(self) -> str | None:
        """The DSN to use: this one, else ``$DATABASE_URL``; None lets asyncpg use libpq's PG* variables."""
        return self.dsn or os.environ.get("DATABASE_URL") or None

    def pool_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``asyncpg.create_pool`` (the DSN excluded)."""
        return {
            "min_size": self.min_size,
            "max_size": self.max_size,
            "max_inactive_connection_lifetime": self.max_inactive_connection_lifetime,
            "command_timeout": self.command_timeout,
            "statement_cache_size": self.statement_cache_size,
            "server_settings": dict(self.server_settings) or None,
        }

    def __repr__(self) -> str:
        return (
            f"DbSettings(dsn={_redact(self.dsn)!r}, min_size={self.min_size}, max_size={self.max_size}, "
            f"max_inactive_connection_lifetime={self.max_inactive_connection_lifetime}, "
            f"command_timeout={self.command_timeout}, statement_cache_size={self.statement_cache_size}, "
            f"server_settings={dict(self.server_settings)!r})"
        )
