"""Housekeeping of the SQLite store, off the hit path: byte caps (sampled LRU eviction), incremental purge of
expired and stale-generation rows, batched access-time writes, WAL checkpoints, and the background thread
that runs them: ``SQLiteHousekeeping``, a base of ``SQLiteBackend``.

Every write the maintenance thread makes stops the sets for a moment (one writer at a time), and a set
stopped once is one slow set, however long the stop. So the thread gathers its work into one stop per wake
(issue 18): one transaction flushes the access times, purges, folds the totals and evicts, then the WAL is
checkpointed, all under one hold of the writers' lock. It starts evicting before the cap (halfway from the
floor, 2 % under the cap or more: see ``floor_of``), so at a steady stream of sets the wakes for checkpoints
(every 256 writes) do the eviction too and a set finds the cap crossed only when its writes outrun them.
Where more than ``PASS_EVICT_ROWS`` must go (a burst, a large cap), the rest is evicted in transactions of
``EVICT_CHUNK`` rows with the lock let go between them, so a set waits for one chunk, never a whole eviction.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time

from infra.cache.backends.sqlite.files import SQLiteFile
from infra.cache.backends.sqlite.schema import BYTES_ALL, BYTES_NS, namespace_id

__all__ = ["EVICT_CHUNK", "PASS_EVICT_ROWS", "SQLiteHousekeeping"]

log = logging.getLogger("infra.cache")
_I63 = 1 << 63
#: rows an eviction transaction outside the maintenance pass deletes at most (the lock is let go between two)
EVICT_CHUNK = 32
#: rows the maintenance pass's own transaction evicts at most (the rest goes in chunks after it)
PASS_EVICT_ROWS = 512
#: between two chunks the evictor sleeps this long, so a waiting set (or another process, polling the file
#: lock) takes the lock: a release alone hands it back to this thread before a waiter wakes
CHUNK_PAUSE = 0.0001
#: a candidate chosen in an earlier transaction goes only if it was not touched or rewritten since
_DELETE_VICTIM = "DELETE FROM entries WHERE id = ? AND atime = ?"

Victim = tuple[int, float, int]  # (id, atime, size)


def floor_of(cap: int, period: int = 0) -> int:
    """Eviction frees down to 2 % under the cap, so the next one is many writes away; a maintenance pass
    frees further, up to 10 % under, when the writes between two checkpoints (``period`` bytes) take more
    than that: otherwise sets would cross the cap between passes, and each crossing is one more stop."""
    return cap - min(cap // 10, max(cap // 50, period + period // 4))


def high_water(cap: int, period: int = 0) -> int:
    """A maintenance pass evicts once the total is past halfway from its floor to the cap (before sets
    cross it)."""
    return cap - (cap - floor_of(cap, period)) // 2


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
    _writes_since_check: int
    _bytes_since_ckpt: int
    _period_bytes: int
    _maint: threading.Thread | None
    _maint_stop: threading.Event
    _maint_wake: threading.Event

    def _totals(self, conn: sqlite3.Connection, namespace: str | None) -> int:
        """Exact bytes of ``namespace`` (None: of the store): folded totals plus the unfolded tail."""
        if namespace is None:
            return int(conn.execute(BYTES_ALL).fetchone()[0])
        return int(conn.execute(BYTES_NS, (namespace_id(namespace),)).fetchone()[0])

    # ------------------------------------------------------------------ the pieces of a pass
    def fold(self) -> int:
        """Fold the rows above the fold mark into the stored totals and move the mark, in one transaction (so
        totals read at any moment, before, during or after, and after a kill -9 anywhere, are exact).

        Returns the number of rows folded. Keeps the tail that reads of the totals sum short.
        """
        with self._write("fold") as conn:
            return self._fold_in(conn)

    @staticmethod
    def _fold_in(conn: sqlite3.Connection) -> int:
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

    def purge(self, limit: int = 1000) -> int:
        """Walk ``limit`` rows from a rolling cursor, deleting expired and stale-generation ones."""
        with self._write("purge") as conn:
            return self._purge_in(conn, limit)

    def _purge_in(self, conn: sqlite3.Connection, limit: int) -> int:
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

    def _flush_touches(self) -> None:
        if self._touches:
            with self._write("touch") as conn:
                self._touches_in(conn)

    def _touches_in(self, conn: sqlite3.Connection) -> None:
        t, self._touches = self._touches, {}
        if t:
            conn.executemany("UPDATE entries SET atime = ? WHERE h = ?", [(v, k) for k, v in t.items()])

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

    # ------------------------------------------------------------------ eviction
    def _targets(self, namespace: str | None) -> list[tuple[str | None, int]]:
        """The caps to hold for a write to ``namespace``: its own (when capped), then the total."""
        if namespace is not None and namespace in self.namespace_max_bytes:
            return [(namespace, self.namespace_max_bytes[namespace]), (None, self.max_bytes)]
        return [(None, self.max_bytes)]

    def _note(self, namespace: str | None, total: int) -> None:
        """Remember an exact total: the write path compares its estimates against the caps between reads
        (and, for the store's total, counts its writes to the next exact read from here)."""
        if namespace is None:
            self._bytes_est = total
            self._writes_since_check = 0
        else:
            self._ns_est[namespace] = total

    def _freed(self, namespace: str | None, size: int) -> None:
        """Take bytes evicted off the estimate (sets add theirs meanwhile: no exact total read per chunk)."""
        if namespace is None:
            self._bytes_est -= size
        else:
            self._ns_est[namespace] = self._ns_est.get(namespace, 0) - size

    def enforce_caps(self, namespace: str | None = None) -> int:
        """Evict (sampled LRU) until the total cap and ``namespace``'s cap hold; returns rows evicted."""
        targets = self._targets(namespace)
        try:
            conn = self._conn()
            totals = [self._totals(conn, ns) for ns, _ in targets]
        except sqlite3.Error as exc:
            raise self._handle(exc, "read") from exc
        evicted = 0
        for (ns, cap), total in zip(targets, totals, strict=False):
            self._note(ns, total)
            if total > cap:
                evicted += self._evict_chunks(ns, cap)
        return evicted

    def _evict_chunks(self, namespace: str | None, cap: int) -> int:
        """Evict ``namespace`` (None: the store) down to ``floor_of(cap)`` in transactions of at most
        ``EVICT_CHUNK`` rows, letting the writers' lock go between them (``_between_chunks``): a set waits
        for one chunk, never for the whole eviction. The first chunk reads the exact total under the lock;
        the later ones carry the bytes freed (a totals read per chunk made chunks cost 10x, issue 18)."""
        floor = floor_of(cap)
        total: int | None = None
        pending: list[Victim] = []
        evicted = 0
        for _ in range(1_000_000):
            # The writers' thread lock (re-entrant; _write takes it too) also covers the count after COMMIT:
            # the set path and the maintenance thread both evict, and a rolled-back eviction counts nothing.
            with self._wlock:
                with self._write("evict") as conn:
                    if total is None:
                        total = self._totals(conn, namespace)
                        self._note(namespace, total)
                    n, freed = self._evict_some(conn, namespace, total - floor, EVICT_CHUNK, pending)
                self.evictions += n
                self._freed(namespace, freed)
            evicted += n
            total -= freed
            if n == 0 or total <= floor or self._closed:
                break
            self._between_chunks()
        return evicted

    def _between_chunks(self) -> None:
        """The writers' lock is free between two eviction chunks: let a waiting writer take it. A set that
        evicts inline (no thread, or 10 % over the cap) only yields the GIL: it is the one paying already."""
        time.sleep(CHUNK_PAUSE if threading.current_thread() is self._maint else 0)

    def _evict_some(
        self, conn: sqlite3.Connection, namespace: str | None, goal: int, limit: int, pending: list[Victim]
    ) -> tuple[int, int]:
        """Delete up to ``limit`` rows, least recently used first, until ``goal`` bytes are freed: (rows,
        bytes). ``pending`` holds the candidates an earlier transaction read and left (taken from its end),
        and keeps what this one leaves."""
        n = freed = 0
        while pending and n < limit and freed < goal:
            rid, atime, size = pending.pop()
            # read before this transaction: it goes only if no set or touch changed it since
            if conn.execute(_DELETE_VICTIM, (rid, atime)).rowcount:
                n += 1
                freed += size
        while n < limit and freed < goal:
            fresh = self._candidates(conn, namespace)
            take = 0
            for _, _, size in fresh:
                if n + take >= limit or freed >= goal:
                    break
                take += 1
                freed += size
            if not take:
                break
            # read in this transaction, under the lock: every one is there
            conn.executemany("DELETE FROM entries WHERE id = ?", [(v[0],) for v in fresh[:take]])
            n += take
            pending[:] = fresh[take:][::-1]
        return n, freed

    def _candidates(self, conn: sqlite3.Connection, namespace: str | None) -> list[Victim]:
        """The least recently used half of a window of the oldest-inserted rows, least recent first (sampled
        LRU: at most half a window goes, so recently used rows in it survive)."""
        cond, args = ("", []) if namespace is None else (" AND ns = ?", [namespace_id(namespace)])
        rows: list[Victim] = conn.execute(
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
        rows = sorted(set(rows), key=lambda r: r[1])
        return rows[: max(1, len(rows) // 2)] if rows else []

    def _over(self, due: set[str | None]) -> bool:
        """Whether the estimates still put a cap found due over it."""
        return any(
            self._bytes_est > self.max_bytes
            if ns is None
            else self._ns_est.get(ns, 0) > self.namespace_max_bytes.get(ns, 1 << 62)
            for ns in due
        )

    # ------------------------------------------------------------------ one pass
    def maintain(self) -> int:
        """One maintenance pass: access times, purge, totals, caps, checkpoint. Safe from any thread.
        Returns the rows evicted."""
        return self._pass(full=True, checkpoint=True)

    def _pass(self, *, full: bool, checkpoint: bool) -> int:
        """The maintenance thread's work in one stop of the writers (see the module docstring): one
        transaction (access times and purge when ``full``, the fold, up to ``PASS_EVICT_ROWS`` evictions
        for each cap past its high water), then the checkpoint, under one hold of the writers' lock. What
        the pass could not evict goes in chunks after it."""
        # The store's cap gets room for this process's writes between two checkpoint wakes (the last period,
        # or the running one if longer); a namespace's cap the plain 2 % (its share of them is not counted).
        period = max(self._period_bytes, self._bytes_since_ckpt)
        caps: list[tuple[str | None, int, int]] = [
            *((ns, cap, 0) for ns, cap in self.namespace_max_bytes.items()),
            (None, self.max_bytes, period),
        ]
        notes: list[tuple[str | None, int]] = []
        rest: list[tuple[str | None, int]] = []
        evicted = 0
        with self._file_lock():
            with self._write("maintain") as conn:
                if full:
                    self._touches_in(conn)
                    self._purge_in(conn, 500)
                self._fold_in(conn)  # first: the totals read below then sum no tail
                for ns, cap, room in caps:
                    total = self._totals(conn, ns)
                    if total > high_water(cap, room):
                        goal = total - floor_of(cap, room)
                        n, freed = self._evict_some(conn, ns, goal, PASS_EVICT_ROWS, [])
                        evicted += n
                        total -= freed
                        if total > cap:
                            rest.append((ns, cap))
                    notes.append((ns, total))
            # after the COMMIT, still under the lock: a rolled-back pass counts nothing, and no set slips in
            self.evictions += evicted
            for ns, total in notes:
                self._note(ns, total)
            if checkpoint:
                self._checkpoint()
        for ns, cap in rest:
            evicted += self._evict_chunks(ns, cap)
        return evicted

    # ------------------------------------------------------------------ the thread
    def _start_maintenance(self) -> None:
        if self._closed or self.maintenance_interval <= 0:
            return
        with self._conns_lock:
            if self._maint is not None:
                return
            t = threading.Thread(target=self._maintenance_loop, name="infra-cache-maintenance", daemon=True)
            self._maint = t
        t.start()

    def _maintenance_loop(self) -> None:
        logged = False
        next_full = time.monotonic() + self.maintenance_interval
        while not self._maint_stop.is_set():
            self._maint_wake.wait(max(0.0, next_full - time.monotonic()))
            self._maint_wake.clear()
            if self._maint_stop.is_set():
                break
            try:
                full = time.monotonic() >= next_full
                if full:
                    next_full = time.monotonic() + self.maintenance_interval
                # Otherwise woken by the write path: caps it found due (see SQLiteBackend._after_write), a
                # burst of writes (checkpoint, so the WAL starts over: see _checkpoint) or an invalidation.
                # A wake for caps alone skips the checkpoint (its fsyncs, at a small cap crossed often, cost
                # more than they save); caps found due by sets queued behind the last pass may be met already.
                ckpt, self._ckpt_due = self._ckpt_due, False
                due, self._caps_due = self._caps_due, set()
                if full or ckpt or not due:
                    self._pass(full=full, checkpoint=True)
                elif self._over(due):
                    self._pass(full=False, checkpoint=False)
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
