"""The PostgreSQL backend's statements as run on one connection (``conn`` first): reads, writes, leases,
introspection and the housekeeping steps. ``PgQueries`` is a base of ``PostgresBackend``, whose plumbing
(``_run``) hands each of these a connection; the SQL itself is in ``sql``.
"""

from __future__ import annotations

import collections
import enum
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from infra.cache.backends.base import BackendStats, EntryInfo, StoredEntry, holder_is_dead, usage_stats
from infra.cache.backends.postgres.genview import GenerationView
from infra.cache.backends.postgres.sql import PgStatements

if TYPE_CHECKING:
    import asyncpg

__all__ = ["BATCH", "Ask", "PgQueries", "current", "hot_entry", "live_entry"]

#: rows per housekeeping batch (purge / eviction), so no statement holds locks for long
BATCH = 500


class PgQueries:
    """The statements of ``PostgresBackend`` (which sets the state below in its ``__init__``)."""

    sql: PgStatements
    origin: str
    _view: GenerationView
    _writes: int
    _touches: collections.deque[tuple[str, str]]
    _max_bytes: int | None
    _ns_caps: dict[str, int]
    _sql_get: str
    _sql_get_hot: str
    _listener: asyncpg.Connection | None

    async def _maintain(self, conn: asyncpg.Connection) -> None:
        """Flush LRU touches, enforce byte caps, purge one batch of dead rows."""
        await self._flush_touches(conn)
        self._writes = 0
        if self._max_bytes or self._ns_caps:
            await self._enforce_caps(conn)
        await self._purge(conn, BATCH)

    async def _flush_touches(self, conn: asyncpg.Connection) -> None:
        q = self._touches
        if not q:
            return
        touches: dict[str, set[str]] = {}
        for _ in range(len(q)):  # popleft is atomic: hits on other threads keep appending meanwhile
            try:
                ns, key = q.popleft()
            except IndexError:
                break
            touches.setdefault(ns, set()).add(key)
        now = time.time()
        for ns, keys in touches.items():
            await conn.execute(self.sql.touch, ns, list(keys), now)

    async def _enforce_caps(self, conn: asyncpg.Connection) -> int:
        usage = {r["namespace"]: int(r["bytes"]) for r in await conn.fetch(self.sql.usage)}
        evicted = 0
        for ns, cap in self._ns_caps.items():
            for _ in range(100):  # bounded: 5000 rows per statement
                if usage.get(ns, 0) <= cap:
                    break
                sizes = await conn.fetch(self.sql.evict_lru(True), usage[ns] - cap, ns)
                if not sizes:
                    break
                usage[ns] -= sum(r["size"] for r in sizes)
                evicted += len(sizes)
        if self._max_bytes:
            total = sum(usage.values())
            for _ in range(100):
                if total <= self._max_bytes:
                    break
                sizes = await conn.fetch(self.sql.evict_lru(False), total - self._max_bytes)
                if not sizes:
                    break
                total -= sum(r["size"] for r in sizes)
                evicted += len(sizes)
        return evicted

    async def _purge(self, conn: asyncpg.Connection, limit: int) -> int:
        status = await conn.execute(self.sql.purge, time.time(), limit)
        await conn.execute(self.sql.purge_leases)
        return _count(status)

    # ------------------------------------------------------------------ one statement each (conn first)
    async def _q_get(self, conn: asyncpg.Connection, ns: str, key: str) -> StoredEntry | None:
        view = self._view
        if view.live:
            got = hot_entry(await conn.fetchrow(self._sql_get_hot, ns, key), view, ns)
            if got is not Ask.SERVER:
                return got
        return live_entry(await conn.fetchrow(self._sql_get, ns, key))

    async def _q_get_many(self, conn: asyncpg.Connection, ns: str, keys: list[str]) -> dict[str, StoredEntry]:
        rows = await conn.fetch(self.sql.get_many, ns, keys, time.time())
        return {r["key"]: StoredEntry(r["payload"], r["codec"], r["expires_at"], r["cost"]) for r in rows}

    async def _q_set(self, conn: asyncpg.Connection, ns: str, key: str, e: StoredEntry) -> None:
        await conn.execute(
            self.sql.set, ns, key, e.codec, e.payload, time.time(), e.expires_at, e.cost, self.sql.channel
        )
        self._writes += 1

    async def _q_set_many(self, conn: asyncpg.Connection, ns: str, items: Mapping[str, StoredEntry]) -> None:
        keys = list(items)
        es = [items[k] for k in keys]
        await conn.execute(
            self.sql.set_many,
            ns,
            keys,
            [e.codec for e in es],
            [e.payload for e in es],
            time.time(),
            [e.expires_at for e in es],
            [e.cost for e in es],
            self.sql.channel,
        )
        self._writes += len(keys)

    async def _q_delete(self, conn: asyncpg.Connection, ns: str, key: str) -> bool:
        return int(await conn.fetchval(self.sql.delete, ns, key, self.sql.channel)) > 0

    async def _q_invalidate(self, conn: asyncpg.Connection, ns: str) -> int:
        row = await conn.fetchrow(self.sql.invalidate, ns, self.sql.channel)
        gen = int(row["generation"])
        self._view.bump(ns, gen)  # before returning: our own next read must not serve the old generation
        return gen

    async def _q_generations(self, conn: asyncpg.Connection) -> dict[str, int]:
        return {r["namespace"]: int(r["generation"]) for r in await conn.fetch(self.sql.generations)}

    async def _q_versions(self, conn: asyncpg.Connection) -> dict[str, tuple[int, int]]:
        rows = await conn.fetch(self.sql.versions)
        return {r["namespace"]: (int(r["generation"]), int(r["changes"])) for r in rows}

    async def _q_clear(self, conn: asyncpg.Connection, ns: str | None) -> int:
        if ns is None:
            return int(await conn.fetchval(self.sql.clear_all, self.sql.channel))
        return int(await conn.fetchval(self.sql.clear_ns, ns, self.sql.channel))

    async def _q_acquire(
        self, conn: asyncpg.Connection, ns: str, key: str, owner: str, timeout: float
    ) -> bool:
        if await conn.fetchrow(self.sql.acquire_lease, ns, key, owner, float(timeout)) is not None:
            return True
        holder = await conn.fetchval(self.sql.lease_owner, ns, key)
        if holder is None or not holder_is_dead(holder):
            return False
        # its holder is a process of this host that has died: take it now, not after the timeout
        return (
            await conn.fetchrow(self.sql.takeover_lease, ns, key, owner, float(timeout), holder) is not None
        )

    async def _q_release(self, conn: asyncpg.Connection, ns: str, key: str, owner: str) -> None:
        await conn.execute(self.sql.release_lease, ns, key, owner)

    async def _q_stats(self, conn: asyncpg.Connection) -> BackendStats:
        rows = await conn.fetch(self.sql.usage)
        by_ns = {r["namespace"]: (int(r["entries"]), int(r["bytes"])) for r in rows}
        return usage_stats(
            by_ns,
            {
                "backend": "postgres",
                "server": self.origin,
                "table": self.sql.prefix,
                "unlogged": self.sql.unlogged,
                "listening": self._listener is not None,
            },
        )

    async def _q_inspect(self, conn: asyncpg.Connection, ns: str | None, limit: int) -> list[EntryInfo]:
        if ns is None:
            rows = await conn.fetch(self.sql.inspect(False), limit)
        else:
            rows = await conn.fetch(self.sql.inspect(True), limit, ns)
        return [EntryInfo(**dict(r.items())) for r in rows]

    async def _q_vacuum(self, conn: asyncpg.Connection) -> None:
        for t in (self.sql.entries, self.sql.gens, self.sql.leases):
            await conn.execute(f"VACUUM {t}")

    async def _q_maintain(self, conn: asyncpg.Connection) -> int:
        await self._flush_touches(conn)
        return await self._enforce_caps(conn)


class Ask(enum.Enum):
    """``hot_entry``'s third answer: the view can't tell, ask the server (the exact statement)."""

    SERVER = "server"


def live_entry(row: Any) -> StoredEntry | None:
    """The entry of a hit statement's row (asyncpg records: columns by name), None when there is no row
    or it has expired (the statements leave that to the caller: one parameter less to encode)."""
    if row is None:
        return None
    expires_at = row["expires_at"]
    if expires_at is not None and expires_at <= time.time():
        return None
    return StoredEntry(row["payload"], row["codec"], expires_at, row["cost"])


def hot_entry(row: Any, view: GenerationView, namespace: str) -> StoredEntry | Ask | None:
    """A row of the hot statement judged by its generation: the entry when the view says it is current,
    None when the view knows it is over (or there is no live row), ``Ask.SERVER`` when the view can't tell.
    The one decision behind ``get``, ``aget`` and the general path (I/O-free)."""
    entry = live_entry(row)
    if entry is None:
        return None
    generation = row["generation"]
    if generation != view.gens.get(namespace, 0) or not view.live:
        return None if current(view, namespace, generation) is False else Ask.SERVER
    return entry


def current(view: GenerationView, namespace: str, generation: int) -> bool | None:
    """Is a row of ``generation`` current by the view? None: ask the server (the view is no longer live,
    or the row is newer than what the view has heard: a notification still in flight)."""
    if not view.live:
        return None
    known = view.gens.get(namespace, 0)
    if generation == known:
        return True
    if generation < known:
        return False  # generations only grow (a reload winds the view back if the server lost them)
    return None


def _count(status: str) -> int:
    """Row count from a command status such as ``DELETE 3``."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, IndexError):
        return 0
