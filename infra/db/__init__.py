"""asyncpg helpers: a tuned pool, per-statement timing, concurrent independent queries.

::

    from infra.db import create_pool, fetch_concurrently, Query
    pool = await create_pool()                    # settings from perf_config's "db" section
    ctx = await fetch_concurrently(pool, {
        "memories": ("SELECT ... WHERE user_id = $1", uid),
        "history":  ("SELECT ... WHERE user_id = $1", uid),
    })                                            # each on its own connection; labels = the names

asyncpg itself loads on the first ``create_pool`` call.
"""

from __future__ import annotations

from infra.config.sections.runtime import WORKLOADS, DbConfig
from infra.db.concurrent import Query, fetch_concurrently
from infra.db.errors import DatabaseConnectError
from infra.db.pool import create_pool, default_timer
from infra.db.timing import StatementTimer, statement_label

__all__ = [
    "WORKLOADS",
    "DatabaseConnectError",
    "DbConfig",
    "Query",
    "StatementTimer",
    "create_pool",
    "default_timer",
    "fetch_concurrently",
    "statement_label",
]
