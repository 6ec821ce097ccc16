"""The SQLite store's schema, statements and id arithmetic (no I/O here).

Tables: ``entries`` (rows in insertion order, found through the UNIQUE ``h`` hash of namespace and key),
``namespaces`` (generation for O(1) invalidation; exact entry and byte totals kept by triggers),
``leases`` (cross-process single-flight) and ``meta`` (schema version). The file stays plain SQLite:
``sqlite3``, sqlite-utils and Datasette read it as is.
"""

from __future__ import annotations

import hashlib
import sqlite3

__all__ = [
    "CHECKPOINT_EVERY",
    "GET",
    "SCHEMA_VERSION",
    "UPSERT",
    "is_corrupt",
    "namespace_id",
    "schema_statements",
    "signed64",
]

SCHEMA_VERSION = 1
#: writes between WAL checkpoints (run by the maintenance thread, PASSIVE: never blocks a writer)
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
CREATE TRIGGER IF NOT EXISTS entries_ins AFTER INSERT ON entries BEGIN
    UPDATE namespaces SET entries = entries + 1, bytes = bytes + new.size WHERE id = new.ns;
END;
CREATE TRIGGER IF NOT EXISTS entries_del AFTER DELETE ON entries BEGIN
    UPDATE namespaces SET entries = entries - 1, bytes = bytes - old.size WHERE id = old.ns;
END;
CREATE TRIGGER IF NOT EXISTS entries_upd AFTER UPDATE OF ns, size ON entries BEGIN
    UPDATE namespaces SET entries = entries - 1, bytes = bytes - old.size WHERE id = old.ns;
    UPDATE namespaces SET entries = entries + 1, bytes = bytes + new.size WHERE id = new.ns;
END;
"""


def schema_statements() -> list[str]:
    """``_SCHEMA`` split into statements (trigger bodies keep their inner semicolons)."""
    out, cur = [], []
    for line in _SCHEMA.strip().splitlines():
        cur.append(line)
        text = "\n".join(cur)
        if line.rstrip().endswith(";") and (
            not text.lstrip().startswith("CREATE TRIGGER") or line.strip() == "END;"
        ):
            out.append(text)
            cur = []
    return out


GET = "SELECT value, codec, expires, cost, key, gen FROM entries WHERE h = ?"
UPSERT = (
    "INSERT INTO entries (h, ns, gen, key, codec, expires, cost, created, atime, size, value) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(h) DO UPDATE SET ns = excluded.ns, gen = excluded.gen, key = excluded.key, "
    "codec = excluded.codec, expires = excluded.expires, cost = excluded.cost, created = excluded.created, "
    "atime = excluded.atime, size = excluded.size, value = excluded.value"
)
_CORRUPT_MARKERS = ("malformed", "not a database", "file is encrypted", "disk i/o error")


def signed64(v: int) -> int:
    return v - _U64 if v >= _I63 else v


def namespace_id(namespace: str) -> int:
    """Deterministic 63-bit id of a namespace (same in every process; no lookup table to keep in sync)."""
    return int.from_bytes(hashlib.sha256(b"ns\x00" + namespace.encode("utf-8")).digest()[:8], "big") >> 1


def is_corrupt(exc: BaseException) -> bool:
    msg = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and any(m in msg for m in _CORRUPT_MARKERS)
