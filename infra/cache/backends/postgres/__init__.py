"""The PostgreSQL backend (asyncpg, imported only when a backend connects).

``backend`` is the store; ``conns`` the connections of one event loop; ``sql`` the statements;
``genview`` the generations heard from LISTEN/NOTIFY; ``loops`` how sync callers drive asyncpg.
"""

from __future__ import annotations

from infra.cache.backends.postgres.backend import PostgresBackend, from_settings

__all__ = ["PostgresBackend", "from_settings"]
