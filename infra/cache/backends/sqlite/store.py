"""``SQLiteBackend``: the default L2 store, one SQLite file shared by every process on the machine.

The schema and statements are in ``schema``, the housekeeping (caps, purge, checkpoints, the
maintenance thread) in ``maint``; this module opens, reads, writes and recovers.

Engineering notes (each choice has a reason):

* WAL, ``synchronous=NORMAL`` (no fsync per commit; a power cut can lose the last commits, never corrupt),
  ``busy_timeout`` = the store budget (50 ms) for a non-cooperating writer (a sqlite3 shell holding the
  write lock): past it the write is skipped and writes fail fast for a backoff (``ReconnectGate``), so a miss
  waits at most one budget, not 5 s per statement (issue 17 item 7).
* Writers serialise on an ``flock`` of ``<path>.lock`` plus a thread lock, then ``BEGIN IMMEDIATE``:
  the lock is taken within the budget (``guard.lock_within``: a blocking flock can't time out, and a
  stopped peer would hold everyone), polled at most 1 ms apart where SQLite's own busy handler sleeps
  1, 2, 5, 10 ... ms between retries; that sleep schedule is what gives diskcache its 100+ ms set tail.
* Rows are appended in insertion order (sequential rowid) and found through a UNIQUE index on a 64-bit
  hash of (namespace, key). Measured here, placing rows by their hash instead (rowid = hash) made sets
  ~1.7x slower (random leaf-page splits) and reads no faster.
* The hash: a 64-hex key (make_key's digest) reduced modulo a 64-bit prime, other keys SHA-256'd, XOR a
  per-namespace salt; the full key is stored and compared, so a collision is a miss, never a wrong answer.
* The namespace generation (O(1) invalidation) is a copy re-read every 0.1 s (a JOIN in the SELECT cost
  ~0.8 us per hit); another process's invalidation is seen within 0.1 s. The hit statement binds the key
  and that generation (``WHERE h = ? AND key = ? AND gen = ?``) and returns four columns: the driver builds
  a description of every result column on every execute (~0.15 us each), a bound parameter costs less.
* LRU eviction is sampled, as Redis does it: a window of the oldest-inserted rows is read and its least
  recently used entries go first. No atime index: it would cost a page write per set and per flush.
* Auto-checkpoint is off on our connections; a background maintenance thread checkpoints (every 256
  writes, under the writers' file lock so it completes and the WAL starts over: a checkpoint racing the
  sets never caught up, the WAL grew without bound and sets slowed by a third), flushes batched access
  times, purges expired / stale rows incrementally and enforces the byte caps, all in one hold of the
  writers' lock per wake (a set stopped once is one slow set, however long the stop). A hit never writes.
* Per-namespace entry and byte totals are exact with no write per set: stored totals up to a fold mark plus
  the rows above it, folded in by the maintenance thread (see ``schema``).
* Schema creation and quarantine run under the flock, so processes starting together don't race on
  ``CREATE TABLE`` / ``journal_mode`` (the race of diskcache issue #85).
* One connection per thread, dropped after ``fork()`` (``os.register_at_fork``).
* ``PRAGMA quick_check`` once per process on open; a failed check, or a "malformed" / "not a database"
  error at run time, moves the file aside as ``<path>.corrupt-<unix time>`` and starts a fresh one. Only the
  file that was checked is moved: its (st_dev, st_ino) is compared first, under the lock, so a process still
  holding the old file never moves the fresh one another process made (issue 17 item 8).
* The directory is 0700 and the files 0600, existing ones included: modes are tightened, symlinks and other
  users' paths refused (``guard.secure_paths``; SQLite gives -wal / -shm the database's mode).
* The store stops growing while free disk space is short (``guard.DiskGuard``): writes skipped and
  counted, one log line per shortage.
* A lease held by a process of this host that has died is taken over at once (its pid is checked).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from infra.cache import fleet_stats as _fleet
from infra.cache.backends.base import (
    GENERATION_POLL_INTERVAL,
    BackendStats,
    CacheBackend,
    EntryInfo,
    StoredEntry,
    entry_from_row,
    holder_is_dead,
)
from infra.cache.backends.gate import ReconnectGate
from infra.cache.backends.sqlite.files import LocalConn, fcntl
from infra.cache.backends.sqlite.guard import DiskGuard
from infra.cache.backends.sqlite.maint import SQLiteHousekeeping
from infra.cache.backends.sqlite.schema import (
    BUMP_ALL_CHANGES,
    BUMP_CHANGES,
    CHECKPOINT_EVERY,
    GET,
    STATS,
    UPSERT,
    VERSIONS,
    EntryRow,
    namespace_id,
    signed64,
)
from infra.config.sections.cache import DEFAULT_STORE_BUDGET
from infra.errors import CacheError

__all__ = ["SQLiteBackend"]

#: WAL bytes between checkpoints at most (fewer while free disk space is short: see ``_after_write``)
CHECKPOINT_BYTES = 16 * 1024**2
_U64 = 1 << 64
_I63 = 1 << 63
_P64 = (1 << 64) - 59  # the largest prime below 2**64

log = logging.getLogger("infra.cache")


class SQLiteBackend(SQLiteHousekeeping, CacheBackend):
    """SQLite L2 store at ``path`` with a total byte cap and optional per-namespace caps.

    Opening is lazy and retried at most every ``retry_open_after`` seconds, so an unwritable directory
    costs one counted error per interval, not one per call.
    """

    name = "sqlite"
    shared = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 1024**3,
        namespace_max_bytes: Mapping[str, int | None] | None = None,
        busy_timeout: float | None = None,
        quick_check: bool = True,
        maintenance_interval: float = 1.0,
        retry_open_after: float = 5.0,
        budget: float = DEFAULT_STORE_BUDGET,
        min_free_bytes: int | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.namespace_max_bytes = {k: v for k, v in (namespace_max_bytes or {}).items() if v is not None}
        #: longest a caller waits for the write lock (ours or SQLite's); see the module docstring
        self.budget = budget
        self.busy_timeout = budget if busy_timeout is None else busy_timeout
        self.gate = ReconnectGate("sqlite", self.path)
        #: ``min_free_bytes``: the free-space floor (None: 10 % of the file system, at most 256 MiB)
        self.disk = DiskGuard(os.path.dirname(os.path.abspath(self.path)), min_free_bytes)
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the file this process checked
        self.quick_check = quick_check
        self.maintenance_interval = maintenance_interval
        self.retry_open_after = retry_open_after
        self._local = LocalConn()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._wlock = threading.RLock()
        self._lock_fd: int | None = None
        self._flocked = False  # this process holds the file lock in _file_lock (see there)
        self._ready = False
        self._ready_lock = threading.Lock()
        self._open_failed_at = 0.0
        self._open_error: CacheError | None = None
        self._closed = False
        self._salts: dict[str, tuple[int, int]] = {}
        self._ensured: set[int] = set()
        self._touches: dict[int, float] = {}
        self._writes_since_check = 0
        self._writes_since_ckpt = 0
        self._bytes_since_ckpt = 0
        self._period_bytes = 0  # bytes this process wrote between its last two checkpoint wakes
        self._bytes_est = 0
        self._ns_est: dict[
            str, int
        ] = {}  # capped namespaces: bytes at the last exact read + own writes since
        self._purge_cursor = -_I63
        self._evict_cursor = -_I63
        self._gens: dict[int, int] = {}
        self._gens_next = 0.0
        self.evictions = 0
        # Caps found due on the write path, for the maintenance thread to enforce (None: the total cap).
        self._caps_due: set[str | None] = set()
        self._ckpt_due = False  # a checkpoint the write path asked for (it may share a wake with caps)
        self._maint: threading.Thread | None = None
        self._maint_stop = threading.Event()
        self._maint_wake = threading.Event()
        self.quarantined: list[str] = []
        self.maintenance_errors = 0
        os.register_at_fork(after_in_child=self._after_fork)

    # ------------------------------------------------------------------ lifecycle
    def _after_fork(self) -> None:
        # The parent's connections and lock fd must not be used by the child (SQLite forbids it).
        self._local = LocalConn()
        self._conns = []
        self._conns_lock = threading.Lock()
        self._wlock = threading.RLock()
        self._lock_fd = None
        self._flocked = False
        self._maint = None
        self._maint_stop = threading.Event()
        self._maint_wake = threading.Event()
        self._touches = {}

    def __repr__(self) -> str:
        return f"SQLiteBackend({self.path!r})"

    def close(self) -> None:
        self._closed = True
        self._maint_stop.set()
        self._maint_wake.set()
        t = self._maint
        if t is not None and t is not threading.current_thread():
            t.join(timeout=2.0)
        self._maint = None
        with contextlib.suppress(Exception):
            if self._touches and self._ready:
                self._flush_touches()
        self.close_connections()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------ ids
    def _ids(self, namespace: str, key: str) -> tuple[int, int]:
        s = self._salts.get(namespace)
        if s is None:
            nsid = namespace_id(namespace)
            s = self._salts[namespace] = (
                nsid,
                int.from_bytes(hashlib.sha256(b"salt\x00" + namespace.encode()).digest()[:8], "big"),
            )
        nsid, salt = s
        if len(key) == 64:  # (the same fast path is spelled out inline in get())
            # A 64-hex key (make_key's digest) is reduced modulo a 64-bit prime, not re-hashed: all 256 bits
            # take part, so structured keys (sequential ids, repeated patterns) still spread; the stored key
            # is compared on every read, so a collision can only cost a miss.
            try:
                v = int(key, 16)
            except ValueError:
                pass
            else:
                return nsid, signed64((v % _P64) ^ salt)
        h = int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:8], "big")
        return nsid, signed64(h ^ salt)

    def _ensure_ns(self, conn: sqlite3.Connection, namespace: str, nsid: int) -> None:
        if nsid not in self._ensured:
            conn.execute("INSERT OR IGNORE INTO namespaces (id, name) VALUES (?, ?)", (nsid, namespace))
            self._ensured.add(nsid)

    # ------------------------------------------------------------------ reads
    def _live_gens(self, now: float) -> dict[int, int]:
        """Namespace generations by id, re-read at most every ``GENERATION_POLL_INTERVAL`` seconds.

        Checked in Python rather than joined in the SELECT: the join cost ~0.8 us per hit here. An
        invalidation by another process is therefore seen within 0.1 s (this process's own at once).
        """
        if now >= self._gens_next:
            conn = self._conn()
            self._gens = {i: g for i, g in conn.execute("SELECT id, gen FROM namespaces")}
            self._gens_next = now + GENERATION_POLL_INTERVAL
        return self._gens

    def get(self, namespace: str, key: str) -> StoredEntry | None:
        row = self.get_row(namespace, key)
        return None if row is None else entry_from_row(row)

    def get_row(
        self, namespace: str, key: str, now: float | None = None
    ) -> tuple[bytes, int, float | None, float] | None:
        """``get`` without the ``StoredEntry`` wrapper: ``(payload, codec, expires_at, cost)`` or None.

        ``Cache.get`` calls this directly on its hottest path (an L2 hit), where every allocation shows.
        """
        s = self._salts.get(namespace)
        if s is not None and len(key) == 64:
            try:
                h = (int(key, 16) % _P64) ^ s[1]
            except ValueError:
                nsid, h = self._ids(namespace, key)
            else:
                nsid = s[0]
                if h >= _I63:
                    h -= _U64
        else:
            nsid, h = self._ids(namespace, key)
        if now is None:
            now = time.time()
        try:
            gens = self._gens if now < self._gens_next else self._live_gens(now)
            cur = self._local.cur
            if cur is None:
                cur = self._cursor()
            # The key and generation are compared by SQLite (a 64-bit hash collision or a stale row is no
            # row): a bound parameter costs less than a result column, which the driver describes anew
            # on every execute.
            row = cur.execute(GET, (h, key, gens.get(nsid, 0))).fetchone()
        except sqlite3.Error as exc:
            raise self._handle(exc, "read") from exc
        except UnicodeEncodeError:  # a key with a lone surrogate: never stored (SQLite text is UTF-8)
            return None
        if row is None:
            return None
        exp = row[2]
        if exp is not None and exp <= now:
            return None
        t = self._touches
        if len(t) < 100_000:  # bounded: under a flood of hits some LRU refreshes are dropped, never memory
            t[h] = now
            if self._maint is None:
                self._start_maintenance()
        return row  # type: ignore[no-any-return]

    def get_many(self, namespace: str, keys: Iterable[str]) -> dict[str, StoredEntry]:
        keys = list(keys)
        if not keys:
            return {}
        nsid = self._ids(namespace, "")[0]
        by_id = {self._ids(namespace, k)[1]: k for k in keys}
        out: dict[str, StoredEntry] = {}
        ids = list(by_id)
        now = time.time()
        try:
            conn = self._conn()
            gen = self._live_gens(now).get(nsid, 0)
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                q = (
                    "SELECT h, value, codec, expires, cost, key, gen FROM entries "
                    f"WHERE h IN ({','.join('?' * len(chunk))})"
                )
                for rid, value, codec, exp, cost, k, g in conn.execute(q, chunk):
                    if by_id.get(rid) == k and g == gen and (exp is None or exp > now):
                        out[k] = StoredEntry(value, codec, exp, cost)
                        self._touch(rid, now)
        except sqlite3.Error as exc:
            raise self._handle(exc, "read") from exc
        return out

    def _touch(self, h: int, now: float) -> None:
        """Record a hit for LRU in memory; the maintenance thread writes access times in batches."""
        t = self._touches
        if len(t) < 100_000:  # bounded: under a flood of hits we drop some LRU refreshes, never memory
            t[h] = now
            if self._maint is None:
                self._start_maintenance()

    # ------------------------------------------------------------------ writes
    def _row(self, namespace: str, key: str, e: StoredEntry, now: float) -> EntryRow:
        # The generation written is this process's copy (at most 0.1 s old): a row written under a
        # generation another process has just bumped is simply invisible, as if invalidated with the rest.
        nsid, rid = self._ids(namespace, key)
        gens = self._gens if now < self._gens_next else self._live_gens(now)
        return EntryRow(
            rid,
            nsid,
            gens.get(nsid, 0),
            key,
            e.codec,
            e.expires_at,
            e.cost,
            now,
            now,
            len(e.payload),
            e.payload,
        )

    def set(self, namespace: str, key: str, entry: StoredEntry) -> None:
        # The hot write: one autocommit UPSERT under the file lock (no BEGIN/COMMIT round trips, no
        # context-manager frames); cap enforcement, when due, runs as its own transaction afterwards.
        if self.gate.down_until:
            self.gate.check()
        if not self.disk.allow(len(entry.payload)):
            return  # free space is short: the store doesn't grow (counted in disk.skipped, logged once)
        try:
            row = self._row(namespace, key, entry, time.time())
            cur = self._local.cur  # this thread's cursor: conn.execute would build a new one per set
            if cur is None:
                cur = self._cursor()
            with self._wlock:
                fd = self._lockfd() if fcntl is not None else -1
                if fd >= 0:
                    self._lock_or_fail(fd)
                try:
                    if row.ns not in self._ensured:
                        self._ensure_ns(cur.connection, namespace, row.ns)
                    # an exact tuple: sqlite3 binds a tuple subclass item by item through the sequence
                    # protocol (~11k instructions a set, +13 %; measured with callgrind)
                    cur.execute(UPSERT, tuple(row))
                finally:
                    if fd >= 0:
                        fcntl.flock(fd, fcntl.LOCK_UN)
        except CacheError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise self._handle(exc, "write") from exc
        if self.gate.delay:
            self.gate.ok()  # the write lock is ours again: close the gate (logged once)
        self._after_write(namespace, row.size)

    def set_many(self, namespace: str, items: Mapping[str, StoredEntry]) -> None:
        if not items:
            return
        now = time.time()
        if not self.disk.allow(sum(len(e.payload) for e in items.values())):
            return
        try:
            rows = [self._row(namespace, k, e, now) for k, e in items.items()]
        except sqlite3.Error as exc:
            raise self._handle(exc, "write") from exc
        with self._write("write") as conn:
            self._ensure_ns(conn, namespace, rows[0].ns)
            conn.executemany(UPSERT, [tuple(r) for r in rows])  # exact tuples bind fast (see set)
        self._after_write(namespace, sum(r.size for r in rows))

    def _after_write(self, namespace: str, size: int) -> None:
        """Enforce byte caps. Exact totals are read every 64 writes (other processes' writes count too) or
        when this process's own writes may have crossed a cap: an exact read sums the unfolded tail (up to
        ~50 us), so a store kept at its cap must not pay one per set. Eviction frees 2% of the cap beyond the
        excess, so the next crossing is many writes away.

        With the maintenance thread running, the check and the eviction are handed to it (woken at once):
        inline they made the set that crossed the cap, 1 in 50 at the cap, pay 1-5 ms (set p99 12x its
        figure below the cap, issue 18). The cap is then exceeded by at most what is written before the
        thread runs; past 10% over it the set evicts inline, so a stalled thread can't let the file grow. The
        thread's passes (every ``CHECKPOINT_EVERY`` writes) evict from 1% under the cap on (more at small
        caps), in the same stop of the writers as the checkpoint (see ``maint``), so at a steady stream of
        sets a crossing is rare."""
        self._bytes_est += size
        self._writes_since_check += 1
        self._writes_since_ckpt += 1
        self._bytes_since_ckpt += size
        if self._maint is None:
            self._start_maintenance()
        elif self._writes_since_ckpt >= CHECKPOINT_EVERY or self._bytes_since_ckpt > min(
            CHECKPOINT_BYTES, self.disk.headroom // 4
        ):
            # by bytes too: a WAL of large values must be copied back (and restarted) while the disk still
            # has room for the copy (the WAL holds a second copy of every page until then)
            self._period_bytes = self._bytes_since_ckpt  # how far under the cap a pass evicts: floor_of
            self._writes_since_ckpt = self._bytes_since_ckpt = 0
            self._ckpt_due = True
            self._maint_wake.set()  # the maintenance thread checkpoints, off this thread's write path
        cap_ns = self.namespace_max_bytes.get(namespace)
        over = self._bytes_est > self.max_bytes
        if cap_ns is not None:
            est = self._ns_est[namespace] = self._ns_est.get(namespace, cap_ns + 1) + size
            over = over or est > cap_ns
        if not over and self._writes_since_check < 64:
            return
        self._writes_since_check = 0
        due = namespace if cap_ns is not None else None
        far = self._bytes_est > self.max_bytes + self.max_bytes // 10 or (
            cap_ns is not None and self._ns_est[namespace] > cap_ns + cap_ns // 10
        )
        # Only a likely eviction goes to the thread; the every-64 check of the exact totals (other
        # processes' writes) stays here: it costs ~50 us, less than waking a thread for it.
        if over and not far and self._maint is not None and self._maint.is_alive():
            self._caps_due.add(due)
            self._maint_wake.set()
            return
        self.enforce_caps(due)

    def delete(self, namespace: str, key: str) -> bool:
        nsid, rid = self._ids(namespace, key)
        with self._write("delete") as conn:
            gone = conn.execute("DELETE FROM entries WHERE h = ? AND key = ?", (rid, key)).rowcount > 0
            if gone:
                conn.execute(BUMP_CHANGES, (nsid,))  # other processes drop their L1 copies (issue 14)
            return gone

    def invalidate(self, namespace: str) -> int:
        nsid = namespace_id(namespace)
        with self._write("invalidate") as conn:
            self._ensure_ns(conn, namespace, nsid)
            conn.execute("UPDATE namespaces SET gen = gen + 1 WHERE id = ?", (nsid,))
            gen: int = conn.execute("SELECT gen FROM namespaces WHERE id = ?", (nsid,)).fetchone()[0]
        self._gens_next = 0.0  # this process sees its own invalidation at once
        self._maint_wake.set()
        return gen

    def generations(self) -> dict[str, int]:
        try:
            return {n: g for n, g in self._conn().execute("SELECT name, gen FROM namespaces")}
        except sqlite3.Error as exc:
            raise self._handle(exc, "read") from exc

    def versions(self) -> dict[str, tuple[int, int]]:
        try:
            return {n: (g, c) for n, g, c in self._conn().execute(VERSIONS)}
        except sqlite3.Error as exc:
            raise self._handle(exc, "read") from exc

    def clear(self, namespace: str | None = None) -> int:
        with self._write("clear") as conn:
            if namespace is None:
                n = conn.execute("DELETE FROM entries").rowcount
                conn.execute("DELETE FROM leases")
                conn.execute(BUMP_ALL_CHANGES)
            else:
                nsid = namespace_id(namespace)
                n = conn.execute("DELETE FROM entries WHERE ns = ?", (nsid,)).rowcount
                self._ensure_ns(conn, namespace, nsid)
                conn.execute(BUMP_CHANGES, (nsid,))
        return int(n)

    def vacuum(self) -> None:
        conn = self._conn()
        try:
            with self._file_lock():
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.execute("VACUUM")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise self._handle(exc, "vacuum") from exc

    # ------------------------------------------------------------------ leases
    def acquire_lease(self, namespace: str, key: str, owner: str, timeout: float) -> bool:
        if not self.disk.allow(0):
            # Free space is short: even a lease row costs WAL pages, so none is written; the caller computes
            # without cross-process single-flight (counted in ``skipped_low_disk``), never waits.
            self._ckpt_due = True  # even if the wake also carries due caps
            self._maint_wake.set()  # a checkpoint lets the WAL start over in the space it already has
            return True
        _, rid = self._ids(namespace, key)
        now = time.time()
        with self._write("lease") as conn:
            row = conn.execute("SELECT owner, expires FROM leases WHERE id = ?", (rid,)).fetchone()
            if row is not None and row[0] != owner and row[1] > now and not holder_is_dead(row[0]):
                return False
            conn.execute(
                "INSERT OR REPLACE INTO leases (id, owner, expires) VALUES (?, ?, ?)",
                (rid, owner, now + timeout),
            )
            return True

    def lease_holder(self, namespace: str, key: str) -> str | None:
        _, rid = self._ids(namespace, key)
        try:
            row = self._conn().execute("SELECT owner, expires FROM leases WHERE id = ?", (rid,)).fetchone()
        except sqlite3.Error as exc:
            raise self._handle(exc, "read") from exc
        return row[0] if row is not None and row[1] > time.time() else None

    def release_lease(self, namespace: str, key: str, owner: str) -> None:
        _, rid = self._ids(namespace, key)
        with self._write("lease") as conn:
            conn.execute("DELETE FROM leases WHERE id = ? AND owner = ?", (rid, owner))

    # ------------------------------------------------------------------ introspection
    # -- fleet-wide counters (infra.cache.fleet_stats): one small table, written at most twice a second
    def fleet_add(self, deltas: Mapping[str, _fleet.FleetCounts]) -> None:
        with self._write("write") as conn:
            _fleet.sqlite_add(conn, deltas)

    def fleet_read(self) -> dict[str, _fleet.FleetCounts]:
        try:
            return _fleet.sqlite_read(self._conn())
        except sqlite3.Error as exc:
            raise self._handle(exc, "read") from exc

    def fleet_reset(self, namespace: str | None = None) -> None:
        with self._write("write") as conn:
            _fleet.sqlite_reset(conn, namespace)

    def stats(self) -> BackendStats:
        try:
            rows = self._conn().execute(STATS).fetchall()
            size = os.path.getsize(self.path)
        except (sqlite3.Error, OSError) as exc:
            raise (
                self._handle(exc, "stats") if isinstance(exc, sqlite3.Error) else CacheError(str(exc))
            ) from exc
        by = {n: (int(e), int(b)) for n, e, b in rows}
        return BackendStats(
            entries=sum(e for e, _ in by.values()),
            bytes=sum(b for _, b in by.values()),
            by_namespace=by,
            extra={
                "path": self.path,
                "file_bytes": size,
                "max_bytes": self.max_bytes,
                "skipped_low_disk": self.disk.skipped,
            },
        )

    def inspect(self, namespace: str | None = None, limit: int = 20) -> list[EntryInfo]:
        q = (
            "SELECT n.name, e.key, e.codec, e.size, e.created, e.atime, e.expires, e.cost FROM entries e "
            "JOIN namespaces n ON n.id = e.ns WHERE e.gen = n.gen"
        )
        args: list[Any] = []
        if namespace is not None:
            q += " AND e.ns = ?"
            args.append(namespace_id(namespace))
        q += " ORDER BY e.atime DESC LIMIT ?"
        args.append(limit)
        try:
            rows = self._conn().execute(q, args).fetchall()
        except sqlite3.Error as exc:
            raise self._handle(exc, "read") from exc
        return [EntryInfo(*r) for r in rows]
