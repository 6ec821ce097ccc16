"""The SQLite store's schema, statements and id arithmetic (no I/O here).

Tables: ``entries`` (rows in insertion order, found through the UNIQUE ``h`` hash of namespace and key),
``namespaces`` (generation for O(1) invalidation; entry and byte totals, see below), ``leases``
(cross-process single-flight) and ``meta`` (schema version, fold mark). The file stays plain SQLite:
``sqlite3``, sqlite-utils and Datasette read it as is.

Exact totals without a write per set (schema 2). ``namespaces.entries`` / ``bytes`` count the rows whose
id is at most the fold mark ``meta['folded']``; rows above it (the tail: rowids grow with each insert) are
summed when totals are read (``BYTES_*`` / ``STATS``, one statement, so one snapshot) and folded in by the
maintenance thread (``fold``: one transaction moves the totals and the mark together). A set therefore
writes no ``namespaces`` page (schema 1's insert trigger cost ~3.4 us and a 4 KB WAL frame per set), and
the totals stay exact through a kill -9 at any point: every change is transactional. The triggers keep
the invariant for rows at or below the mark: a delete or an update there adjusts the totals, and so does
an insert there (a rowid is reused after the highest rows are deleted, or chosen at random near 2**63).

Change counts (issue 14): ``changes`` counts, per namespace, the deletes and clears (written by
``SQLiteBackend``) and the sets that replace a live entry (the ``entries_replaced`` trigger: a set that
inserts, or that replaces an expired or stale-generation row, which no L1 still serves, counts nothing, so
the common set costs nothing more). Every process polls the counts with the generations (``VERSIONS``) and
drops its L1 entries of a namespace whose count moved. Created with ``IF NOT EXISTS`` on every open, so
files of schema 2 gain them without a migration; processes running older code ignore them.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import NamedTuple

__all__ = [
    "BUMP_ALL_CHANGES",
    "BUMP_CHANGES",
    "BYTES_ALL",
    "BYTES_NS",
    "CHECKPOINT_EVERY",
    "GET",
    "SCHEMA_VERSION",
    "STATS",
    "UPSERT",
    "VERSIONS",
    "EntryRow",
    "is_corrupt",
    "migrate_statements",
    "namespace_id",
    "schema_statements",
    "signed64",
]

SCHEMA_VERSION = 2
#: writes between WAL checkpoints (by the maintenance thread, under the writers' file lock: _checkpoint)
CHECKPOINT_EVERY = 256
_U64 = 1 << 64
_I63 = 1 << 63
_P64 = (1 << 64) - 59  # the largest prime below 2**64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v);
CREATE TABLE IF NOT EXISTS namespaces (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    gen INTEGER NOT NULL DEFAULT 0,
    entries INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    h INTEGER NOT NULL UNIQUE,
    ns INTEGER NOT NULL,
    gen INTEGER NOT NULL,
    key TEXT NOT NULL,
    codec INTEGER NOT NULL,
    expires REAL,
    cost REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    atime REAL NOT NULL,
    size INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS changes (ns INTEGER PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0);
CREATE TRIGGER IF NOT EXISTS entries_replaced AFTER UPDATE OF value ON entries
WHEN old.gen = new.gen AND (old.expires IS NULL OR old.expires > (julianday('now') - 2440587.5) * 86400.0)
BEGIN
    INSERT INTO changes (ns, n) VALUES (new.ns, 1) ON CONFLICT (ns) DO UPDATE SET n = n + 1;
END;
INSERT OR IGNORE INTO meta (k, v) VALUES ('folded', (SELECT COALESCE(MAX(id), 0) FROM entries));
CREATE TRIGGER IF NOT EXISTS entries_ins AFTER INSERT ON entries
WHEN new.id <= (SELECT v FROM meta WHERE k = 'folded') BEGIN
    UPDATE namespaces SET entries = entries + 1, bytes = bytes + new.size WHERE id = new.ns;
END;
CREATE TRIGGER IF NOT EXISTS entries_del AFTER DELETE ON entries
WHEN old.id <= (SELECT v FROM meta WHERE k = 'folded') BEGIN
    UPDATE namespaces SET entries = entries - 1, bytes = bytes - old.size WHERE id = old.ns;
END;
CREATE TRIGGER IF NOT EXISTS entries_upd AFTER UPDATE OF id, ns, size ON entries BEGIN
    UPDATE namespaces SET entries = entries - 1, bytes = bytes - old.size
    WHERE id = old.ns AND old.id <= (SELECT v FROM meta WHERE k = 'folded');
    UPDATE namespaces SET entries = entries + 1, bytes = bytes + new.size
    WHERE id = new.ns AND new.id <= (SELECT v FROM meta WHERE k = 'folded');
END;
"""
#: Schema 1 kept the totals with unconditional triggers of the same names (so a process still running
#: schema 1 code cannot re-create them: CREATE TRIGGER IF NOT EXISTS sees ours). Its totals were exact for
#: every row, so the fold mark starts at the highest id.
_MIGRATE_1_TO_2 = (
    "DROP TRIGGER IF EXISTS entries_ins",
    "DROP TRIGGER IF EXISTS entries_del",
    "DROP TRIGGER IF EXISTS entries_upd",
    "INSERT OR REPLACE INTO meta (k, v) VALUES ('folded', (SELECT COALESCE(MAX(id), 0) FROM entries))",
)

_TAIL = "SELECT ns, size FROM entries WHERE id > (SELECT v FROM meta WHERE k = 'folded')"
_TAIL_BYTES = "SELECT COALESCE(SUM(size), 0) FROM entries WHERE id > (SELECT v FROM meta WHERE k = 'folded')"
#: Exact bytes of one namespace (parameter: its id), folded total plus the tail. Bytes only: what the
#: caps compare, and a second pass over the tail for the count cost ~13 us of ~42 (256 rows unfolded).
BYTES_NS = (
    "SELECT COALESCE((SELECT bytes FROM namespaces WHERE id = ?1), 0) + (" + _TAIL_BYTES + " AND ns = ?1)"
)
#: Exact bytes of the whole store.
BYTES_ALL = "SELECT (SELECT COALESCE(SUM(bytes), 0) FROM namespaces) + (" + _TAIL_BYTES + ")"
#: Exact (name, entries, bytes) of every namespace.
STATS = (
    "SELECT n.name, n.entries + COALESCE(t.c, 0), n.bytes + COALESCE(t.b, 0) FROM namespaces n "
    "LEFT JOIN (SELECT ns, COUNT(*) AS c, SUM(size) AS b FROM (" + _TAIL + ") GROUP BY ns) t ON t.ns = n.id "
    "ORDER BY n.name"
)


def schema_statements() -> list[str]:
    """``_SCHEMA`` split into statements (trigger bodies keep their inner semicolons)."""
    out: list[str] = []
    cur: list[str] = []
    for line in _SCHEMA.strip().splitlines():
        cur.append(line)
        text = "\n".join(cur)
        if line.rstrip().endswith(";") and (
            not text.lstrip().startswith("CREATE TRIGGER") or line.strip() == "END;"
        ):
            out.append(text)
            cur = []
    return out


#: (name, generation, change count) of every namespace: what ``Cache`` polls.
VERSIONS = "SELECT n.name, n.gen, COALESCE(c.n, 0) FROM namespaces n LEFT JOIN changes c ON c.ns = n.id"
#: Count a change (parameter: the namespace id): a delete or a clear.
BUMP_CHANGES = "INSERT INTO changes (ns, n) VALUES (?, 1) ON CONFLICT (ns) DO UPDATE SET n = n + 1"
#: Count a change in every namespace (a clear of the whole store).
BUMP_ALL_CHANGES = (
    "INSERT INTO changes (ns, n) SELECT id, 1 FROM namespaces WHERE true "
    "ON CONFLICT (ns) DO UPDATE SET n = n + 1"
)
#: A hit (parameters: hash, key, the namespace's live generation): (payload, codec, expires, cost).
GET = "SELECT value, codec, expires, cost FROM entries WHERE h = ? AND key = ? AND gen = ?"


class EntryRow(NamedTuple):
    """One row of ``entries`` in ``UPSERT``'s parameter order."""

    h: int  # the row id: 64-bit hash of (namespace salt, key)
    ns: int  # namespace id
    gen: int  # the namespace generation it was written in
    key: str
    codec: int
    expires: float | None
    cost: float
    created: float
    atime: float
    size: int  # len(value)
    value: bytes


#: Store one row (parameters: an ``EntryRow``).
UPSERT = (
    "INSERT INTO entries (h, ns, gen, key, codec, expires, cost, created, atime, size, value) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(h) DO UPDATE SET ns = excluded.ns, gen = excluded.gen, key = excluded.key, "
    "codec = excluded.codec, expires = excluded.expires, cost = excluded.cost, created = excluded.created, "
    "atime = excluded.atime, size = excluded.size, value = excluded.value"
)
_CORRUPT_MARKERS = ("malformed", "not a database", "file is encrypted", "disk i/o error")


def migrate_statements(version: int) -> list[str]:
    """Statements that bring a file at schema ``version`` to ``SCHEMA_VERSION`` (run before the schema's own
    ``CREATE ... IF NOT EXISTS``, in the same transaction, under the file lock)."""
    return list(_MIGRATE_1_TO_2) if version < 2 else []


def signed64(v: int) -> int:
    return v - _U64 if v >= _I63 else v


def namespace_id(namespace: str) -> int:
    """Deterministic 63-bit id of a namespace (same in every process; no lookup table to keep in sync)."""
    return int.from_bytes(hashlib.sha256(b"ns\x00" + namespace.encode("utf-8")).digest()[:8], "big") >> 1


def is_corrupt(exc: BaseException) -> bool:
    msg = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and any(m in msg for m in _CORRUPT_MARKERS)
