"""The SQL of the PostgreSQL backend, built once per table prefix (no I/O here).

Tables (``{p}`` is the prefix, ``perf_cache`` by default):

* ``{p}_entries``: one row per ``(namespace, key)``; ``generation`` is the namespace generation the row was
  written in; ``payload`` is ``bytea``; times are Unix seconds (``double precision``) so they compare with
  ``StoredEntry.expires_at`` directly. Optionally UNLOGGED (faster writes, emptied after a server crash:
  right for a cache).
* ``{p}_generations``: ``namespace -> generation``; a namespace with no row is at generation 0.
* ``{p}_leases``: single-flight leases, always UNLOGGED (a lease never needs to survive a crash).
* ``{p}_changes``: ``namespace -> changes``, how many deletes, clears and sets that replaced an entry the
  namespace has seen (issue 14). Each is counted by the statement that makes it (a data-modifying CTE), and
  ``versions`` reads generations and counts together: ``Cache`` drops its L1 entries of a namespace whose
  count moved, so another host's delete / set / clear reaches every L1.

Reads come in two forms. The exact one checks the generation in the same statement (a sub-select on the
generations primary key), so an invalidation made on any host is honoured by the very next read, whatever
the notifications do. The hot one (``get_hot``) returns the row's generation and lets the backend compare
it with the generations it keeps from LISTEN/NOTIFY; it is used only while that listener is connected and
loaded (see ``PostgresBackend``), and saves the sub-select (~3.5 µs of server time per hit).
"""

from __future__ import annotations

import dataclasses
import hashlib

__all__ = ["PgStatements"]


def _lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock id for schema creation of one table prefix."""
    return int.from_bytes(
        hashlib.sha256(f"infra.cache.schema:{name}".encode()).digest()[:8], "big", signed=True
    )


@dataclasses.dataclass(frozen=True, slots=True)
class PgStatements:
    """Every statement the backend sends, for one table prefix."""

    prefix: str
    unlogged: bool = False

    @property
    def entries(self) -> str:
        return f'"{self.prefix}_entries"'

    @property
    def gens(self) -> str:
        return f'"{self.prefix}_generations"'

    @property
    def changes(self) -> str:
        return f'"{self.prefix}_changes"'

    @property
    def leases(self) -> str:
        return f'"{self.prefix}_leases"'

    @property
    def channel(self) -> str:
        """LISTEN/NOTIFY channel for invalidations (payload ``"<generation>:<namespace>"``)."""
        return f"{self.prefix}_invalidate"

    @property
    def schema_lock(self) -> int:
        return _lock_key(self.prefix)

    # ------------------------------------------------------------------ schema
    def schema(self) -> list[str]:
        u = "UNLOGGED " if self.unlogged else ""
        p = self.prefix
        return [
            f"""CREATE {u}TABLE IF NOT EXISTS {self.entries} (
                namespace   text NOT NULL,
                key         text NOT NULL,
                generation  bigint NOT NULL,
                codec       smallint NOT NULL,
                payload     bytea NOT NULL,
                size        integer NOT NULL,
                created_at  double precision NOT NULL,
                accessed_at double precision NOT NULL,
                expires_at  double precision,
                cost        double precision NOT NULL DEFAULT 0,
                PRIMARY KEY (namespace, key))""",
            f'CREATE INDEX IF NOT EXISTS "{p}_entries_expires" ON {self.entries} (expires_at) '
            "WHERE expires_at IS NOT NULL",
            f'CREATE INDEX IF NOT EXISTS "{p}_entries_lru" ON {self.entries} (namespace, accessed_at)',
            f"""CREATE TABLE IF NOT EXISTS {self.gens} (
                namespace  text PRIMARY KEY,
                generation bigint NOT NULL)""",
            f"""CREATE TABLE IF NOT EXISTS {self.changes} (
                namespace text PRIMARY KEY,
                changes   bigint NOT NULL)""",
            f"""CREATE UNLOGGED TABLE IF NOT EXISTS {self.leases} (
                namespace  text NOT NULL,
                key        text NOT NULL,
                owner      text NOT NULL,
                expires_at double precision NOT NULL,
                PRIMARY KEY (namespace, key))""",
        ]

    # ------------------------------------------------------------------ reads
    def _gen(self, param: str = "$1") -> str:
        return f"COALESCE((SELECT g.generation FROM {self.gens} g WHERE g.namespace = {param}), 0)"

    @property
    def get(self) -> str:
        """$1 namespace, $2 key -> (codec, payload, expires_at, cost); the caller drops an expired row (one
        parameter less to encode on the hottest statement)."""
        return (
            f"SELECT e.codec, e.payload, e.expires_at, e.cost FROM {self.entries} e "
            f"WHERE e.namespace = $1 AND e.key = $2 AND e.generation = {self._gen()}"
        )

    @property
    def get_hot(self) -> str:
        """$1 namespace, $2 key -> (codec, payload, expires_at, cost, generation): no generation sub-select;
        the caller compares the row's generation with the one it knows."""
        return (
            f"SELECT codec, payload, expires_at, cost, generation FROM {self.entries} "
            "WHERE namespace = $1 AND key = $2"
        )

    @property
    def get_many(self) -> str:
        """$1 namespace, $2 keys text[], $3 now -> (key, codec, payload, expires_at, cost)."""
        return (
            f"SELECT e.key, e.codec, e.payload, e.expires_at, e.cost FROM {self.entries} e "
            f"WHERE e.namespace = $1 AND e.key = ANY($2::text[]) AND e.generation = {self._gen()} "
            "AND (e.expires_at IS NULL OR e.expires_at > $3)"
        )

    # ------------------------------------------------------------------ writes
    _UPSERT = (
        " ON CONFLICT (namespace, key) DO UPDATE SET generation = EXCLUDED.generation, "
        "codec = EXCLUDED.codec, "
        "payload = EXCLUDED.payload, size = EXCLUDED.size, created_at = EXCLUDED.created_at, "
        "accessed_at = EXCLUDED.accessed_at, expires_at = EXCLUDED.expires_at, cost = EXCLUDED.cost"
    )

    def _bump(self, rows: str) -> str:
        """INSERT counting one change of each namespace that ``rows`` (a SELECT of namespaces) yields,
        returning the new counts (pushed by ``_notify``)."""
        return (
            f"INSERT INTO {self.changes} AS c (namespace, changes) {rows} "
            "ON CONFLICT (namespace) DO UPDATE SET changes = c.changes + 1 RETURNING namespace, changes"
        )

    @staticmethod
    def _notify(channel: str) -> str:
        """A scalar sub-select that NOTIFYs ``c<count>:<namespace>`` for each row of CTE ``b`` (delivered at
        commit); a plain SELECT CTE would never run unless read, so it is read here."""
        return f"(SELECT count(pg_notify({channel}, 'c' || b.changes || ':' || b.namespace)) FROM b)"

    def _counting_replacements(self, upsert: str) -> str:
        """``upsert``, plus one change counted (and pushed on channel $8) when it replaced a row (``xmax``
        is 0 only on an insert)."""
        return (
            f"WITH u AS ({upsert} RETURNING NOT (xmax = 0) AS replaced), b AS ("
            + self._bump("SELECT $1::text, 1 WHERE EXISTS (SELECT 1 FROM u WHERE u.replaced)")
            + f") SELECT {self._notify('$8')}"
        )

    @property
    def set(self) -> str:
        """$1 ns, $2 key, $3 codec, $4 payload, $5 now, $6 expires_at, $7 cost, $8 channel."""
        return self._counting_replacements(
            f"INSERT INTO {self.entries} (namespace, key, generation, codec, payload, size, created_at, "
            f"accessed_at, expires_at, cost) VALUES ($1, $2, {self._gen()}, $3::int2, $4::bytea, "
            "octet_length($4::bytea), $5::float8, $5::float8, $6::float8, $7::float8)" + self._UPSERT
        )

    @property
    def set_many(self) -> str:
        """$1 ns, $2 keys[], $3 codecs[], $4 payloads[], $5 now, $6 expires[], $7 costs[], $8 channel."""
        return self._counting_replacements(
            f"INSERT INTO {self.entries} (namespace, key, generation, codec, payload, size, created_at, "
            f"accessed_at, expires_at, cost) SELECT $1, u.k, {self._gen()}, u.c, u.p, octet_length(u.p), "
            "$5, $5, "
            "u.x, u.cost FROM unnest($2::text[], $3::int2[], $4::bytea[], $6::float8[], $7::float8[]) "
            "AS u(k, c, p, x, cost)" + self._UPSERT
        )

    @property
    def delete(self) -> str:
        """$1 ns, $2 key, $3 channel -> (rows deleted (0 or 1), _); a delete counts and pushes a change."""
        return (
            f"WITH d AS (DELETE FROM {self.entries} WHERE namespace = $1 AND key = $2 RETURNING 1), "
            f"b AS ({self._bump('SELECT $1::text, 1 WHERE EXISTS (SELECT 1 FROM d)')}) "
            f"SELECT (SELECT count(*) FROM d), {self._notify('$3')}"
        )

    @property
    def invalidate(self) -> str:
        """$1 ns, $2 channel -> new generation; NOTIFY is delivered when the statement commits."""
        return (
            f"WITH g AS (INSERT INTO {self.gens} AS t (namespace, generation) VALUES ($1, 1) "
            "ON CONFLICT (namespace) DO UPDATE SET generation = t.generation + 1 RETURNING generation) "
            "SELECT generation, pg_notify($2, generation::text || ':' || $1) FROM g"
        )

    @property
    def generations(self) -> str:
        return f"SELECT namespace, generation FROM {self.gens}"

    @property
    def versions(self) -> str:
        """-> (namespace, generation, changes) of every namespace with either."""
        return (
            "SELECT COALESCE(g.namespace, c.namespace) AS namespace, "
            "COALESCE(g.generation, 0) AS generation, COALESCE(c.changes, 0) AS changes "
            f"FROM {self.gens} g FULL OUTER JOIN {self.changes} c ON c.namespace = g.namespace"
        )

    @property
    def touch(self) -> str:
        """$1 ns, $2 keys[], $3 now: the batched LRU access-time update (never on the read path)."""
        return f"UPDATE {self.entries} SET accessed_at = $3 WHERE namespace = $1 AND key = ANY($2::text[])"

    # ------------------------------------------------------------------ housekeeping
    @property
    def purge(self) -> str:
        """$1 now, $2 limit: expired or stale-generation rows, in one bounded batch (by ctid)."""
        return (
            f"DELETE FROM {self.entries} WHERE ctid IN (SELECT e.ctid FROM {self.entries} e "
            f"LEFT JOIN {self.gens} g ON g.namespace = e.namespace "
            "WHERE (e.expires_at IS NOT NULL AND e.expires_at <= $1) "
            "OR e.generation <> COALESCE(g.generation, 0) "
            "LIMIT $2)"
        )

    @property
    def purge_leases(self) -> str:
        return f"DELETE FROM {self.leases} WHERE expires_at <= extract(epoch from clock_timestamp())"

    @property
    def usage(self) -> str:
        cols = "namespace, count(*)::bigint AS entries, COALESCE(sum(size), 0)::bigint AS bytes"
        return f"SELECT {cols} FROM {self.entries} GROUP BY 1"

    def evict_lru(self, with_ns: bool) -> str:
        """$1 bytes to free[, $2 namespace]: the least recently used rows (of one namespace) whose sizes
        add up to at least $1, at most 5000 per statement; returns their sizes."""
        where = "WHERE namespace = $2 " if with_ns else ""
        return (
            f"DELETE FROM {self.entries} WHERE ctid IN (SELECT ctid FROM (SELECT ctid, size, "
            "sum(size) OVER (ORDER BY accessed_at, ctid ROWS UNBOUNDED PRECEDING) AS run FROM "
            f"(SELECT ctid, size, accessed_at FROM {self.entries} {where}"
            "ORDER BY accessed_at, ctid LIMIT 5000) o) w "
            "WHERE run - size < $1) RETURNING size"
        )

    @property
    def clear_all(self) -> str:
        """$1 channel -> (rows deleted, _); a change counted and pushed in every namespace the store knows."""
        known = (
            f"SELECT namespace, 1 FROM (SELECT namespace FROM d UNION SELECT namespace FROM {self.gens} "
            f"UNION SELECT namespace FROM {self.changes}) n"
        )
        return (
            f"WITH d AS (DELETE FROM {self.entries} RETURNING namespace), b AS ({self._bump(known)}) "
            f"SELECT (SELECT count(*) FROM d), {self._notify('$1')}"
        )

    @property
    def clear_ns(self) -> str:
        """$1 ns, $2 channel -> (rows deleted, _); a clear counts and pushes a change."""
        return (
            f"WITH d AS (DELETE FROM {self.entries} WHERE namespace = $1 RETURNING 1), "
            f"b AS ({self._bump('SELECT $1::text, 1')}) "
            f"SELECT (SELECT count(*) FROM d), {self._notify('$2')}"
        )

    def inspect(self, with_ns: bool) -> str:
        where = "WHERE namespace = $2 " if with_ns else ""
        return (
            "SELECT namespace, key, codec, size, created_at, accessed_at, expires_at, cost "
            f"FROM {self.entries} {where}ORDER BY accessed_at DESC LIMIT $1"
        )

    # ------------------------------------------------------------------ leases
    @property
    def acquire_lease(self) -> str:
        """$1 ns, $2 key, $3 owner, $4 timeout -> a row iff taken (server clock: host clocks don't matter)."""
        now = "extract(epoch from clock_timestamp())"
        return (
            f"INSERT INTO {self.leases} AS l (namespace, key, owner, expires_at) "
            f"VALUES ($1, $2, $3, {now} + $4) "
            "ON CONFLICT (namespace, key) DO UPDATE SET owner = EXCLUDED.owner, "
            "expires_at = EXCLUDED.expires_at "
            f"WHERE l.expires_at <= {now} OR l.owner = EXCLUDED.owner RETURNING owner"
        )

    @property
    def lease_owner(self) -> str:
        return f"SELECT owner FROM {self.leases} WHERE namespace = $1 AND key = $2"

    @property
    def takeover_lease(self) -> str:
        """$1 ns, $2 key, $3 owner, $4 timeout, $5 the dead holder -> a row iff taken from it."""
        now = "extract(epoch from clock_timestamp())"
        return (
            f"UPDATE {self.leases} SET owner = $3, expires_at = {now} + $4 "
            "WHERE namespace = $1 AND key = $2 AND owner = $5 RETURNING owner"
        )

    @property
    def release_lease(self) -> str:
        return f"DELETE FROM {self.leases} WHERE namespace = $1 AND key = $2 AND owner = $3"
