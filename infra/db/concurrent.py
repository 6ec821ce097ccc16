"""``fetch_concurrently``: independent queries at once, each on its own pooled connection.

One asyncpg connection runs one query at a time (a second raises "another operation is in
progress", asyncpg#56), so ``asyncio.gather`` over one connection serialises or fails. Here each
query acquires its own connection from the pool; the wall time is about the slowest query's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal, overload

from infra.db.pool import default_timer
from infra.db.timing import StatementTimer
from infra.hotpath.gather import gather_ordered

if TYPE_CHECKING:
    import asyncpg

__all__ = ["Query", "fetch_concurrently"]

Method = Literal["fetch", "fetchrow", "fetchval", "execute"]


class Query:
    """One query for ``fetch_concurrently``: SQL, its arguments, the pool method, a metrics label."""

    __slots__ = ("args", "label", "method", "sql")

    def __init__(self, sql: str, *args: object, method: Method = "fetch", label: str | None = None) -> None:
        if method not in ("fetch", "fetchrow", "fetchval", "execute"):
            raise ValueError(f"method must be fetch, fetchrow, fetchval or execute, not {method!r}")
        self.sql = sql
        self.args = args
        self.method: Method = method
        self.label = label

    def __repr__(self) -> str:
        return (
            f"Query({self.sql[:40]!r}, {len(self.args)} args, method={self.method!r}, label={self.label!r})"
        )


QueryLike = Query | str | Sequence[object]
"""A query for ``fetch_concurrently``: a ``Query``, an SQL string, or a tuple ``(sql, *args)``."""


def _as_query(q: QueryLike, label: str | None) -> Query:
    if isinstance(q, Query):
        query = q
    elif isinstance(q, str):
        query = Query(q)
    elif isinstance(q, Sequence) and q and isinstance(q[0], str):
        query = Query(q[0], *q[1:])
    else:
        raise TypeError(f"expected Query, SQL str or (sql, *args), not {q!r}")
    if label is not None and query.label is None:
        query = Query(query.sql, *query.args, method=query.method, label=label)
    return query


async def _run(pool: asyncpg.Pool, q: Query, timeout: float | None) -> object:
    result: object = await getattr(pool, q.method)(q.sql, *q.args, timeout=timeout)
    return result


@overload
async def fetch_concurrently(
    pool: asyncpg.Pool,
    queries: Mapping[str, QueryLike],
    *,
    timeout: float | None = ...,
    limit: int | None = ...,
    on_error: Literal["cancel", "capture"] = ...,
    timer: StatementTimer | None = ...,
) -> dict[str, object]: ...


@overload
async def fetch_concurrently(
    pool: asyncpg.Pool,
    queries: Sequence[QueryLike],
    *,
    timeout: float | None = ...,
    limit: int | None = ...,
    on_error: Literal["cancel", "capture"] = ...,
    timer: StatementTimer | None = ...,
) -> list[object]: ...


async def fetch_concurrently(
    pool: asyncpg.Pool,
    queries: Sequence[QueryLike] | Mapping[str, QueryLike],
    *,
    timeout: float | None = None,
    limit: int | None = None,
    on_error: Literal["cancel", "capture"] = "cancel",
    timer: StatementTimer | None = None,
) -> list[object] | dict[str, object]:
    """Run independent queries concurrently, each on its own connection from ``pool``.

    ``queries``: a sequence (results come back as a list in the same order) or a mapping of name to
    query (results come back as a dict; each name is also the query's metrics label). A query is a
    ``Query``, an SQL string, or a tuple ``(sql, *args)``. ``timeout`` is per query (asyncpg's);
    ``limit`` bounds how many connections this call holds at once (default: the pool's own limit);
    ``on_error`` as in ``gather_ordered``. A result is what the pool method returns (a list of
    ``Record`` for ``fetch``, a ``Record`` or None for ``fetchrow``, a value for ``fetchval``, the
    status string for ``execute``), or with ``on_error="capture"`` the exception the query raised.
    """
    names: list[str | None] = list(queries.keys()) if isinstance(queries, Mapping) else [None] * len(queries)
    raw = list(queries.values()) if isinstance(queries, Mapping) else list(queries)
    qs = [_as_query(q, n) for q, n in zip(raw, names, strict=True)]
    t = timer if timer is not None else default_timer()
    for q in qs:
        if q.label is not None:
            t.name(q.sql, q.label)
    results = await gather_ordered((_run(pool, q, timeout) for q in qs), limit=limit, on_error=on_error)
    if isinstance(queries, Mapping):
        return {str(name): result for name, result in zip(names, results, strict=True)}
    return list(results)
