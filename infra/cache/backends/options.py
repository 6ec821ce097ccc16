"""The keywords the shared backends' ``from_settings`` (and ``create_backend``) take as overrides, typed.

Each ``TypedDict`` names exactly the constructor's keywords (tests/cache_backends/test_backend_options.py
keeps them equal), so a misspelled override is a mypy error rather than a ``TypeError`` at start-up.
``SharedBackendOverrides`` holds the keywords both backends take: ``create_backend`` picks its backend from
``settings.backend`` at run time, so it accepts only what either one would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

__all__ = ["PostgresOverrides", "RedisOverrides", "SharedBackendOverrides"]


class SharedBackendOverrides(TypedDict, total=False):
    """Keywords of both ``PostgresBackend`` and ``RedisBackend``."""

    max_bytes: int | None
    namespace_max_bytes: Mapping[str, int] | None
    connect_timeout: float
    op_timeout: float
    maintenance_interval: float
    listen: bool
    budget: float


class PostgresOverrides(SharedBackendOverrides, total=False):
    """``PostgresBackend``'s keywords."""

    dsn: str
    table: str
    unlogged: bool
    max_connections: int
    sync_mode: str
    async_mode: str


class RedisOverrides(SharedBackendOverrides, total=False):
    """``RedisBackend``'s keywords."""

    url: str
    prefix: str
