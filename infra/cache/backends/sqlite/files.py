"""The SQLite store's file: opening it (once per process, under the writers' lock), one connection per
thread, the writers' file lock within the budget, and quarantining a corrupt file.

``SQLiteFile`` is the half of ``SQLiteBackend`` that deals with the file; ``store`` reads and writes rows
through it (``_conn``, ``_cursor``, ``_file_lock``, ``_handle``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator

from infra.cache.backends.gate import ReconnectGate
from infra.cache.backends.sqlite.guard import lock_within, secure_paths
from infra.cache.backends.sqlite.schema import (
    SCHEMA_VERSION,
    is_corrupt,
    migrate_statements,
    schema_statements,
)
from infra.errors import CacheCorruptError, CacheError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite's busy handler alone serialises writers
    fcntl = None  # type: ignore[assignment]

__all__ = ["LocalConn", "LockBusy", "SQLiteFile", "fcntl"]

log = logging.getLogger("infra.cache")


class LockBusy(CacheError):
    """The writers' lock stayed busy for the whole budget (this operation is skipped)."""


class LocalConn(threading.local):
    """This thread's connection and reusable cursor (None until the thread's first call)."""

    conn: sqlite3.Connection | None = None
    cur: sqlite3.Cursor | None = None


class SQLiteFile:
    """Opening, connections, the writers' lock and quarantine of the database at ``path`` (a base of
    ``SQLiteBackend``, which sets the state below in its ``__init__``)."""

    path: str
    budget: float
    busy_timeout: float
    quick_check: bool
    retry_open_after: float
    quarantined: list[str]
    gate: ReconnectGate
    _local: LocalConn
    _conns: list[sqlite3.Connection]
    _conns_lock: threading.Lock
    _wlock: threading.RLock
    _lock_fd: int | None
    _flocked: bool
    _ready: bool
    _ready_lock: threading.Lock
    _open_failed_at: float
    _open_error: CacheError | None
    _closed: bool
    _ident: tuple[int, int] | None
    _ensured: set[int]

    def close_connections(self) -> None:
        """Close every thread's connection; each thread opens a fresh one on its next call."""
        with self._conns_lock:
            # A fresh thread-local: every thread's next call opens a new connection (no per-call check).
            conns, self._conns = self._conns, []
            self._local = LocalConn()
        for c in conns:
            with contextlib.suppress(Exception):
                c.close()

    # ------------------------------------------------------------------ opening
    def _lockfd(self) -> int:
        if self._lock_fd is None:
            self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        return self._lock_fd

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """The writers' thread lock and file lock. Re-entrant: the maintenance pass holds it around its
        transaction and checkpoint, and an inner hold must not let the file lock go."""
        with self._wlock:
            if fcntl is None or self._flocked:
                yield
                return
            fd = self._lockfd()
            self._lock_or_fail(fd)
            self._flocked = True  # (read and written only by the thread holding _wlock)
            try:
                yield
            finally:
                self._flocked = False
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _lock_or_fail(self, fd: int) -> None:
        """The writers' flock within the budget, or ``CacheError``. Only our own writers take this lock, and
        they pass it on every statement: a timeout here is contention (or a stopped peer), so it skips this
        write only and opens no gate (a gate made one slow moment cost every write of its backoff)."""
        if not lock_within(fd, self.budget):
            raise LockBusy(
                f"cache write skipped: the writers' lock stayed busy for {self.budget * 1000:.0f} ms"
            )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=64,
        )
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-8192")
        conn.execute("PRAGMA mmap_size=67108864")
        conn.execute("PRAGMA journal_size_limit=67108864")  # a WAL reset truncates the file to 64 MB
        return conn

    def _open(self) -> None:
        """Create / check the file once per process (under the file lock)."""
        now = time.monotonic()
        if self._open_error is not None and now - self._open_failed_at < self.retry_open_after:
            raise self._open_error
        try:
            secure_paths(self.path)
            before = len(self.quarantined)
            with self._file_lock():
                self._init_schema()
        except LockBusy:
            raise  # a peer is opening (or writing) right now: the next call tries again, not 5 s later
        except CacheError as exc:
            self._open_error, self._open_failed_at = exc, now
            raise
        except (OSError, sqlite3.Error) as exc:
            err = CacheError(f"cannot open the cache database {self.path!r}: {exc}")
            err.__cause__ = exc
            self._open_error, self._open_failed_at = err, now
            raise err from exc
        self._open_error = None
        self._ready = True
        if len(self.quarantined) > before:
            # Report the quarantine once (counted by Cache as an error); the fresh file serves from now on.
            raise CacheCorruptError(f"cache database was corrupt; moved aside to {self.quarantined[-1]}")

    def _init_schema(self) -> None:
        for attempt in range(2):
            conn: sqlite3.Connection | None = None
            try:
                st = os.stat(self.path)  # under the lock: the file we check is the one a quarantine may move
                self._ident = (st.st_dev, st.st_ino)
                conn = self._connect()
                if self.quick_check:
                    row = conn.execute("PRAGMA quick_check").fetchone()
                    if row is None or row[0] != "ok":
                        raise sqlite3.DatabaseError(f"database disk image is malformed (quick_check: {row})")
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    log.warning("cache database %s: journal_mode is %s, not WAL", self.path, mode)
                conn.execute("BEGIN IMMEDIATE")
                version = self._schema_version(conn)
                if version is not None and version < SCHEMA_VERSION:
                    for stmt in migrate_statements(version):
                        conn.execute(stmt)
                for stmt in schema_statements():
                    conn.execute(stmt)
                if version is None or version < SCHEMA_VERSION:
                    conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('schema', ?)", (SCHEMA_VERSION,))
                conn.execute("COMMIT")
                conn.close()
                return
            except sqlite3.DatabaseError as exc:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                if attempt == 0 and is_corrupt(exc):
                    self._quarantine_locked(exc)
                    continue
                raise

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> int | None:
        """The file's schema version (None: a new file)."""
        if (
            conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
            is None
        ):
            return None
        row = conn.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()
        return None if row is None else int(row[0])

    def _conn(self) -> sqlite3.Connection:
        c = self._local.conn
        if c is not None:
            return c
        if self._closed:
            raise CacheError("the cache backend is closed")
        if not self._ready:
            with self._ready_lock:
                if not self._ready:
                    self._open()
        try:
            c = self._connect()
        except (OSError, sqlite3.Error) as exc:
            raise CacheError(f"cannot open the cache database {self.path!r}: {exc}") from exc
        with self._conns_lock:
            self._conns.append(c)
            loc = self._local  # read under the lock: a concurrent close may have just replaced it
            loc.conn, loc.cur = c, c.cursor()
        return c

    def _cursor(self) -> sqlite3.Cursor:
        """This thread's reusable cursor (one less allocation per read than ``conn.execute``)."""
        self._conn()
        cur = self._local.cur
        assert cur is not None
        return cur

    # ------------------------------------------------------------------ corruption
    def _quarantine_locked(self, exc: BaseException) -> str | None:
        """Move the corrupt file (and its -wal / -shm) aside; caller holds the file lock. None when the file
        at ``path`` is no longer the one this process checked (another process moved it aside and started a
        fresh one, which is not ours to judge: it is checked again on reopening)."""
        self.close_connections()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None and self._ident is not None and (st.st_dev, st.st_ino) != self._ident:
            log.warning("cache database %s was replaced by another process; reopening it", self.path)
            return None
        stamp = f"{time.time():.0f}"
        dest = f"{self.path}.corrupt-{stamp}"
        n = 0
        while os.path.exists(dest):
            n += 1
            dest = f"{self.path}.corrupt-{stamp}-{n}"
        if os.path.exists(self.path):
            os.replace(self.path, dest)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                if suffix == "-wal":
                    os.replace(self.path + suffix, dest + suffix)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(self.path + suffix)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        st = os.fstat(fd)
        os.close(fd)
        self._ident = (st.st_dev, st.st_ino)
        self._ensured.clear()
        self.quarantined.append(dest)
        log.error("cache database %s was corrupt (%s); moved aside to %s", self.path, exc, dest)
        return dest

    def _handle(self, exc: Exception, what: str) -> CacheError:
        """Map a driver error to CacheError; quarantine the file when it is corrupt."""
        if is_corrupt(exc) and "disk i/o" not in str(exc).lower():
            try:
                with self._file_lock():
                    dest = self._quarantine_locked(exc)
                    self._ready = False
            except Exception as qexc:
                return CacheError(f"cache {what} failed ({exc}); quarantine failed too: {qexc}")
            if dest is None:
                err: CacheError = CacheError(f"cache {what} failed ({exc}); the file was replaced meanwhile")
            else:
                err = CacheCorruptError(f"cache database was corrupt ({exc}); moved to {dest}")
        elif isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc).lower():
            # another program holds SQLite's write lock past the budget: fail fast for a backoff
            return self.gate.failed(exc)
        else:
            err = CacheError(f"cache {what} failed: {exc}")
        err.__cause__ = exc
        return err

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE .. COMMIT) under the writers' file lock."""
        self.gate.check()
        try:
            conn = self._conn()
            with self._file_lock():
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                    if self.gate.delay:
                        self.gate.ok()
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
        except CacheError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise self._handle(exc, what) from exc
