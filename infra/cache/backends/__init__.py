"""Shared (multi-host) cache backends: PostgreSQL (asyncpg) and Redis (redis-py).

Both implement ``infra.cache.backends.base.CacheBackend`` with ``shared = True`` (``Cache`` signs every
payload it stores in them). Each imports its driver only when a backend is built, so ``import infra.cache``
stays free of asyncpg and redis::

    from infra.cache.backends import create_backend
    backend = create_backend(settings)          # settings.backend == "postgres" (dsn) or "redis" (url)

``create_backend`` is the factory ``Cache`` / ``get_cache()`` can call for the shared kinds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from infra.cache.backends.base import CacheBackend
    from infra.cache.backends.options import SharedBackendOverrides
    from infra.config.sections.cache import CacheConfig

__all__ = ["create_backend"]


def create_backend(settings: CacheConfig, **overrides: Unpack[SharedBackendOverrides]) -> CacheBackend:
    """Build the shared backend ``settings.backend`` names ("postgres" or "redis") with ``overrides``
    (the keywords both take: for ``table`` / ``prefix`` / ..., call that backend's ``from_settings``)."""
    if settings.backend == "postgres":
        from infra.cache.backends.postgres import PostgresBackend

        return PostgresBackend.from_settings(settings, **overrides)
    if settings.backend == "redis":
        from infra.cache.backends.redis import RedisBackend

        return RedisBackend.from_settings(settings, **overrides)
    raise ValueError(
        f"create_backend builds the shared backends 'postgres' and 'redis', not {settings.backend!r}"
    )
