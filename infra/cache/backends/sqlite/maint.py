"""Housekeeping of the SQLite store, off the hit path: byte caps (sampled LRU eviction), incremental purge of
expired and stale-generation rows, batched access-time writes, WAL checkpoints, and the background thread
that runs them: ``SQLiteHousekeeping``, a base of ``SQLiteBackend``.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time

from infra.cache.backends.sqlite.files import SQLiteFile
from infra.cache.backends.sqlite.schema import TOTALS_ALL, TOTALS_NS, namespace_id

__all__ = ["SQLiteHousekeeping"]

log = logging.getLogger("infra.cache")
_I63 = 1 << 63


class SQLiteHousekeeping(SQLiteFile):
    """Caps, purge, access times, checkpoints and the maintenance thread (state set by ``SQLiteBackend``)."""

    max_bytes: int
    namespace_max_bytes: dict[str, int]
    maintenance_interval: float
    evictions: int
    maintenance_errors: int
    _caps_due: set[str | None]
    _ckpt_due: bool
    _bytes_est: int
    _ns_est: dict[str, int]
    _evict_cursor: int
    _purge_cursor: int
    _touches: dict[int, float]
    _writes_since_ckpt: int
    _bytes_since_ckpt: int
    _maint: threading.Thread | None
    _maint_stop: threading.Event
    _maint_wake: threading.Event

    def _totals(self, conn: sqlite3.Connection, namespace: str | None) -> int:
        """Exact bytes of ``namespace`` (None: of the store): folded totals plus the unfolded tail."""
        if namespace is None:
            return int(conn.execute(TOTALS_ALL).fetchone()[1])
        return int(conn.execute(TOTALS_NS, (namespace_id(namespace),)).fetchone()[1])

    def fold(self) -> int:
        """Fold the rows above the fold mark into the stored totals and move the mark, in one transaction (so
        totals read at any moment, before, during or after, and after a kill -9 anywhere, are exact).

        Returns the number of rows folded. Keeps the tail that reads of the totals sum short.
        """
        with self._write("fold") as conn:
            mark = conn.execute("SELECT v FROM meta WHERE k = 'folded'").fetchone()
            hi = conn.execute("SELECT MAX(id) FROM entries").fetchone()[0]
            if mark is None or hi is None or hi <= mark[0]:
                return 0
            groups = conn.execute(
                "SELECT ns, COUNT(*), SUM(size) FROM entries WHERE id > ? AND id <= ? GROUP BY ns",
                (mark[0], hi),
            ).fetchall()
            conn.executemany(
                "UPDATE namespaces SET entries = entries + ?, bytes = bytes + ? WHERE id = ?",
                [(n, b, ns) for ns, n, b in groups],
            )
            conn.execute("UPDATE meta SET v = ? WHERE k = 'folded'", (hi,))
            return sum(n for _, n, _ in groups)

    def enforce_caps(self, namespace: str | None = None) -> int:
        """Evict (sampled LRU) until the total cap and ``namespace``'s cap hold; returns rows evicted."""
        evicted = 0
        targets: list[tuple[str | None, int]] = [(None, self.max_bytes)]
        if namespace is not None and namespace in self.namespace_max_bytes:
            targets.insert(0, (namespace, self.namespace_max_bytes[namespace]))
        try:
            conn = self._conn()
            totals = [self._totals(conn, ns) for ns, _ in targets]
        except sqlite3.Error as exc:
            raise self._handle(exc, "read") from exc
        for (ns, cap), total in zip(targets, totals, strict=False):
            self._note(ns, total)
            if total <= cap:
                continue
            # Once over, evict down to 2% under the cap (not just under it), so the next eviction is many
            # writes away: a store held at its cap evicts once per ~2% of the cap written, not every few sets.
            floor = cap - cap // 50
            evicted_here = 0
            # The writers' thread lock (re-entrant; _write takes it too) also covers the count after COMMIT:
            # the set path and the maintenance thread both evict, and a rolled-back eviction counts nothing.
            with self._wlock:
                with self._write("evict") as wconn:
                    # One exact read under the lock, then the sizes deleted are subtracted: a totals read
                    # sums the unfolded tail, and the lock is held for all of it (sets wait).
                    total = self._totals(wconn, ns)
                    for _ in range(100_000):
                        if total <= floor:
                            break
                        n, freed = self._evict_step(wconn, ns, total - cap)
                        evicted_here += n
                        total -= freed
                        if n == 0:
                            break
                    self._note(ns, total)
                self.evictions += evicted_here
            evicted += evicted_here
        return evicted

    def _enforce_due(self) -> None:
        """Enforce the caps the write path found due, on the maintenance thread. Caps flagged meanwhile stay
        for the next wake, so that wake counts as a cap wake (no extra checkpoint)."""
        due, self._caps_due = self._caps_due, set()
        for namespace in due:
            self.enforce_caps(namespace)

    def _note(self, namespace: str | None, total: int) -> None:
        """Remember an exact total: the write path compares its estimates against the caps between reads."""
        if namespace is None:
            self._bytes_est = total
        else:
            self._ns_est[namespace] = total

    def _evict_step(self, conn: sqlite3.Connection, namespace: str | None, excess: int) -> tuple[int, int]:
        """Delete the least recently used rows of a window of the oldest-inserted ones: (rows, bytes)
        deleted."""
        cond, args = ("", []) if namespace is None else (" AND ns = ?", [namespace_id(namespace)])
        rows = conn.execute(
            f"SELECT id, atime, size FROM entries WHERE id >= ?{cond} ORDER BY id LIMIT 256",
            [self._evict_cursor, *args],
        ).fetchall()
        if len(rows) < 256:
            self._evict_cursor = -_I63
            if len(rows) < 32:
                rows += conn.execute(
                    f"SELECT id, atime, size FROM entries WHERE 1{cond} ORDER BY id LIMIT 256", args
                ).fetchall()
        else:
            self._evict_cursor = rows[-1][0]
        if not rows:
            return 0, 0
        rows = sorted(set(rows), key=lambda r: r[1])
        # Free the excess plus 2% of the cap, least recently used first, so the next sets don't each
        # pay for an eviction; never more than half a window, so recently used rows in it survive.
        goal = excess + self.max_bytes // 50
        victims: list[tuple[int]] = []
        freed = 0
        for rid, _, size in rows:
            if freed >= goal or (victims and len(victims) >= len(rows) // 2):
                break
            victims.append((rid,))
            freed += size
        conn.executemany("DELETE FROM entries WHERE id = ?", victims)
        return len(victims), freed

    def purge(self, limit: int = 1000) -> int:
        """Walk ``limit`` rows from a rolling cursor, deleting expired and stale-generation ones."""
        with self._write("purge") as conn:
            row = conn.execute(
                "SELECT MAX(id), COUNT(*) FROM (SELECT id FROM entries WHERE id >= ? ORDER BY id LIMIT ?)",
                (self._purge_cursor, limit),
            ).fetchone()
            hi = row[0]
            if hi is None:
                self._purge_cursor = -_I63
                conn.execute("DELETE FROM leases WHERE expires < ?", (time.time(),))
                return 0
            n = conn.execute(
                "DELETE FROM entries WHERE id IN (SELECT e.id FROM entries e LEFT JOIN namespaces n "
                "ON n.id = e.ns WHERE e.id >= ? AND e.id <= ? AND "
                "(e.expires <= ? OR n.gen IS NULL OR e.gen <> n.gen))",
                (self._purge_cursor, hi, time.time()),
            ).rowcount
            self._purge_cursor = hi + 1 if row[1] >= limit and hi < _I63 - 1 else -_I63
            return int(n)

    def _start_maintenance(self) -> None:
        if self._closed or self.maintenance_interval <= 0:
            return
        with self._conns_lock:
            if self._maint is not None:
                return
            t = threading.Thread(target=self._maintenance_loop, name="infra-cache-maintenance", daemon=True)
            self._maint = t
        t.start()

    def _flush_touches(self) -> None:
        t, self._touches = self._touches, {}
        if not t:
            return
        with self._write("touch") as conn:
            conn.executemany("UPDATE entries SET atime = ? WHERE h = ?", [(v, k) for k, v in t.items()])

    def maintain(self) -> None:
        """One maintenance step: access times, totals, purge, caps, checkpoint. Safe from any thread."""
        self._flush_touches()
        self.fold()
        self.purge(500)
        for ns in self.namespace_max_bytes:
            self.enforce_caps(ns)
        self.enforce_caps(None)
        self._checkpoint()

    def _checkpoint(self) -> None:
        """Copy the WAL into the database under the writers' file lock, so the checkpoint completes and the
        next write starts the WAL over from its beginning.

        A PASSIVE checkpoint racing a steady stream of sets never catches up (new frames land while it
        copies), so SQLite can never restart the WAL: it grew by ~11 KB a set without bound (190 MB after
        18 000 sets here), and every set paid for appending to fresh file blocks. Writers wait for the lock
        in the kernel for the checkpoint's length (a few ms, once per ``CHECKPOINT_EVERY`` writes), never in
        SQLite's sleeping busy handler."""
        self._writes_since_ckpt = self._bytes_since_ckpt = 0
        with contextlib.suppress(sqlite3.OperationalError), self._file_lock():
            self._conn().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _maintenance_loop(self) -> None:
        logged = False
        next_full = time.monotonic() + self.maintenance_interval
        while not self._maint_stop.is_set():
            self._maint_wake.wait(max(0.0, next_full - time.monotonic()))
            self._maint_wake.clear()
            if self._maint_stop.is_set():
                break
            try:
                if time.monotonic() < next_full:
                    # Woken by the write path: caps it found due (see SQLiteBackend._after_write), or a burst
                    # of writes: fold the totals (keeps the tail that reads of them sum short) and checkpoint,
                    # so the WAL starts over (see _checkpoint).
                    had_caps = bool(self._caps_due)
                    self._enforce_due()
                    if self._ckpt_due or not had_caps:  # asked for, or a wake for no cap (invalidate)
                        self._ckpt_due = False
                        self.fold()
                        self._checkpoint()
                    continue
                next_full = time.monotonic() + self.maintenance_interval
                self.maintain()
            except Exception as exc:
                self.maintenance_errors += 1
                if not logged:
                    log.warning(
                        "cache maintenance on %s failed: %s (further failures counted only)", self.path, exc
                    )
                    logged = True
        loc = self._local
        if loc.conn is not None:
            with contextlib.suppress(Exception):
                loc.conn.close()
