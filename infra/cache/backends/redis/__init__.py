"""The Redis backend (redis-py, imported only when a backend connects)."""

from __future__ import annotations

from infra.cache.backends.redis.backend import RedisBackend, from_settings

__all__ = ["RedisBackend", "from_settings"]
