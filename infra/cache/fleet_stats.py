"""Fleet-wide cache counters: hits, misses, errors, uncacheable calls and compute-seconds-saved per namespace,
kept in the store.

Counters in memory die with their process, so ``cache stats`` run from a terminal (a process that made no
call) could never show a hit rate. Here every process that counts adds its *deltas* to one row per
namespace in the store the processes share, and any process reads the totals:

* **Batched**: a daemon thread per process pushes what every tracked ``Cache`` counted since its last push,
  twice a second (``PUSH_INTERVAL``) and only when something changed; ``Cache.close()`` and interpreter exit
  push the rest. The hit path does nothing more than it did (a hit is still one ``list.append``): a busy
  process writes at most two small transactions a second (so another process sees its counts within a
  second), never one per hit.
* **Additive**: a push is ``hits = hits + ?`` (SQLite/PostgreSQL UPSERT, Redis ``HINCRBY``), so any number
  of processes and hosts add up without coordination, and a failed push is retried with the deltas kept.
* **Reset**: ``cache stats --reset`` deletes the rows; each process goes on adding its deltas since its
  last push, so the totals are "every process since the last reset".
* **Fork**: a forked child starts from what the parent had counted (the parent pushes its own deltas).

How a process ends decides what it pushes last:

* **Normal exit, ``sys.exit``, an uncaught exception, SIGINT** (KeyboardInterrupt unwinds to the
  interpreter's exit): ``atexit`` pushes the rest.
* **SIGTERM** (``docker stop``, systemd, Kubernetes): its default action kills the process without running
  ``atexit``. So when the push thread first starts in the main thread and SIGTERM's handler is still the
  default (``SIG_DFL``), a handler is installed that pushes the rest (on a helper thread, waiting at most
  ``SIGTERM_PUSH_TIMEOUT`` seconds: a push that needs a lock the interrupted main thread holds is given up,
  never waited on), puts ``SIG_DFL`` back and sends SIGTERM again, so the process still dies by the signal
  (exit status -15 / 143 as before). A handler of your own is left alone: if it ends with ``sys.exit()``,
  ``atexit`` pushes; if it ends with ``os._exit()``, call ``Cache.close()`` (or ``get_cache().close()``)
  first. Set ``INFRA_CACHE_SIGTERM_PUSH=0`` in the environment to install nothing. The price of any
  Python-level handler: Python runs it between bytecodes of the main thread, so a main thread stuck inside
  one long C call that never returns to the interpreter dies when that call returns (or by the SIGKILL a
  service manager sends after its grace period), not at once.
* **SIGKILL, ``os._exit()``, a crash**: no Python code runs; the counts since the last push (at most half a
  second of them) are lost. Call ``Cache.close()`` before ``os._exit()`` to keep them.

Backends take part through three
small methods, ``fleet_add(deltas)``, ``fleet_read()`` and ``fleet_reset(namespace)``, built on the
helpers below (SQLite, PostgreSQL, Redis); a backend without them (memory) has no fleet counters.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PUSH_INTERVAL",
    "SIGTERM_PUSH_ENV",
    "SIGTERM_PUSH_TIMEOUT",
    "FleetCounts",
    "close",
    "fleet_totals",
    "pg_add",
    "pg_read",
    "pg_reset",
    "push_now",
    "redis_add",
    "redis_read",
    "redis_reset",
    "sqlite_add",
    "sqlite_read",
    "sqlite_reset",
    "track",
]

log = logging.getLogger("infra.cache")

#: seconds between two pushes of one process's deltas
PUSH_INTERVAL = 0.5
#: seconds the SIGTERM handler waits for the last push before the process dies (docker stop waits 10 s)
SIGTERM_PUSH_TIMEOUT = 2.0
#: environment variable: "0" (or "false", "no", "off") installs no SIGTERM handler
SIGTERM_PUSH_ENV = "INFRA_CACHE_SIGTERM_PUSH"


@dataclass(frozen=True, slots=True)
class FleetCounts:
    """Counts of one namespace (a delta to add, or the fleet's totals)."""

    hits: int = 0
    misses: int = 0
    errors: int = 0
    compute_seconds_saved: float = 0.0
    uncacheable: int = 0  # calls that ran uncached: an argument with no canonical key (not lookups)

    def __bool__(self) -> bool:
        return bool(self.hits or self.misses or self.errors or self.compute_seconds_saved or self.uncacheable)

    def __add__(self, other: FleetCounts) -> FleetCounts:
        return FleetCounts(
            self.hits + other.hits,
            self.misses + other.misses,
            self.errors + other.errors,
            self.compute_seconds_saved + other.compute_seconds_saved,
            self.uncacheable + other.uncacheable,
        )

    def __sub__(self, other: FleetCounts) -> FleetCounts:
        return FleetCounts(
            self.hits - other.hits,
            self.misses - other.misses,
            self.errors - other.errors,
            self.compute_seconds_saved - other.compute_seconds_saved,
            self.uncacheable - other.uncacheable,
        )

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return round(self.hits / total, 6) if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hit_rate,
            "errors": self.errors,
            "uncacheable": self.uncacheable,
            "compute_seconds_saved": round(self.compute_seconds_saved, 6),
        }


# ---------------------------------------------------------------------------------------------- SQLite
# ``uncacheable`` came later: a store written before it has the table without the column, which the first
# push adds (reads take the columns there are).
SQLITE_TABLE = "fleet_stats"
_SQLITE_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {SQLITE_TABLE} (namespace TEXT PRIMARY KEY, hits INTEGER NOT NULL, "
    "misses INTEGER NOT NULL, errors INTEGER NOT NULL, saved REAL NOT NULL, "
    "uncacheable INTEGER NOT NULL DEFAULT 0)"
)
_SQLITE_ADD = (
    f"INSERT INTO {SQLITE_TABLE} (namespace, hits, misses, errors, saved, uncacheable) "
    "VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(namespace) DO UPDATE SET hits = hits + excluded.hits, misses = misses + excluded.misses, "
    "errors = errors + excluded.errors, saved = saved + excluded.saved, "
    "uncacheable = uncacheable + excluded.uncacheable"
)
_ADD_UNCACHEABLE = "ALTER TABLE {} ADD COLUMN uncacheable {} NOT NULL DEFAULT 0"


def _rows(deltas: Mapping[str, FleetCounts]) -> list[tuple[str, int, int, int, float, int]]:
    rows = sorted(deltas.items())
    return [(ns, d.hits, d.misses, d.errors, d.compute_seconds_saved, d.uncacheable) for ns, d in rows]


def _counts(row: Mapping[str, Any]) -> FleetCounts:
    """One stored row (by column name; ``uncacheable`` absent in a store from before it) as counts."""
    return FleetCounts(
        int(row["hits"]),
        int(row["misses"]),
        int(row["errors"]),
        float(row["saved"]),
        int(row.get("uncacheable") or 0),
    )


def sqlite_add(conn: Any, deltas: Mapping[str, FleetCounts]) -> None:
    """Add ``deltas`` inside the caller's write transaction (``conn`` is a sqlite3 connection)."""
    conn.execute(_SQLITE_SCHEMA)
    try:
        conn.executemany(_SQLITE_ADD, _rows(deltas))
    except Exception as exc:  # a table from before ``uncacheable``: add the column (same transaction)
        if "uncacheable" not in str(exc):
            raise
        conn.execute(_ADD_UNCACHEABLE.format(SQLITE_TABLE, "INTEGER"))
        conn.executemany(_SQLITE_ADD, _rows(deltas))


def sqlite_read(conn: Any) -> dict[str, FleetCounts]:
    try:
        cur = conn.execute(f"SELECT * FROM {SQLITE_TABLE}")
    except Exception as exc:  # no push yet: the table does not exist
        if "no such table" in str(exc):
            return {}
        raise
    names = [d[0] for d in cur.description]
    return {str(row[0]): _counts(dict(zip(names, row, strict=True))) for row in cur.fetchall()}


def sqlite_reset(conn: Any, namespace: str | None) -> None:
    conn.execute(_SQLITE_SCHEMA)
    if namespace is None:
        conn.execute(f"DELETE FROM {SQLITE_TABLE}")
    else:
        conn.execute(f"DELETE FROM {SQLITE_TABLE} WHERE namespace = ?", (namespace,))


# ------------------------------------------------------------------------------------------ PostgreSQL
def _pg_table(prefix: str) -> str:
    return f'"{prefix}_fleet_stats"'


async def pg_add(conn: Any, prefix: str, deltas: Mapping[str, FleetCounts]) -> None:
    t = _pg_table(prefix)
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {t} (namespace text PRIMARY KEY, hits bigint NOT NULL, "
        "misses bigint NOT NULL, errors bigint NOT NULL, saved double precision NOT NULL, "
        "uncacheable bigint NOT NULL DEFAULT 0)"
    )
    add = (
        f"INSERT INTO {t} AS f (namespace, hits, misses, errors, saved, uncacheable) "
        "VALUES ($1, $2, $3, $4, $5, $6) "
        "ON CONFLICT (namespace) DO UPDATE SET hits = f.hits + excluded.hits, "
        "misses = f.misses + excluded.misses, errors = f.errors + excluded.errors, "
        "saved = f.saved + excluded.saved, uncacheable = f.uncacheable + excluded.uncacheable"
    )
    try:
        await conn.executemany(add, _rows(deltas))
    except Exception as exc:  # a table from before ``uncacheable`` (SQLSTATE 42703: undefined column)
        if getattr(exc, "sqlstate", None) != "42703":
            raise
        await conn.execute(_ADD_UNCACHEABLE.replace("COLUMN", "COLUMN IF NOT EXISTS").format(t, "bigint"))
        await conn.executemany(add, _rows(deltas))


async def pg_read(conn: Any, prefix: str) -> dict[str, FleetCounts]:
    exists = await conn.fetchval("SELECT to_regclass($1)", _pg_table(prefix))
    if exists is None:
        return {}
    rows = await conn.fetch(f"SELECT * FROM {_pg_table(prefix)}")
    return {str(r["namespace"]): _counts(dict(r.items())) for r in rows}


async def pg_reset(conn: Any, prefix: str, namespace: str | None) -> None:
    if await conn.fetchval("SELECT to_regclass($1)", _pg_table(prefix)) is None:
        return
    if namespace is None:
        await conn.execute(f"DELETE FROM {_pg_table(prefix)}")
    else:
        await conn.execute(f"DELETE FROM {_pg_table(prefix)} WHERE namespace = $1", namespace)


# ----------------------------------------------------------------------------------------------- Redis
# One hash, ``{prefix}:fleet``, field ``<namespace>\x1f<counter>``: a push is one MULTI of HINCRBY(FLOAT)s.
_FIELDS = ("hits", "misses", "errors", "uncacheable", "saved")


def redis_add(client: Any, key: str, deltas: Mapping[str, FleetCounts]) -> None:
    with client.pipeline(transaction=True) as p:
        for ns, d in sorted(deltas.items()):
            for name, v in zip(_FIELDS, (d.hits, d.misses, d.errors, d.uncacheable), strict=False):
                if v:
                    p.hincrby(key, f"{ns}\x1f{name}", int(v))
            if d.compute_seconds_saved:
                p.hincrbyfloat(key, f"{ns}\x1fsaved", float(d.compute_seconds_saved))
        p.execute()


def redis_read(client: Any, key: str) -> dict[str, FleetCounts]:
    acc: dict[str, dict[str, float]] = {}
    for field, value in (client.hgetall(key) or {}).items():
        f = field.decode() if isinstance(field, bytes) else str(field)
        ns, _, name = f.rpartition("\x1f")
        acc.setdefault(ns, {})[name] = float(value)
    return {ns: _counts({name: v.get(name, 0) for name in _FIELDS}) for ns, v in acc.items()}


def redis_reset(client: Any, key: str, namespace: str | None) -> None:
    if namespace is None:
        client.delete(key)
    else:
        client.hdel(key, *(f"{namespace}\x1f{n}" for n in _FIELDS))


# ------------------------------------------------------------------------------------------ the pusher
def _totals(stats: Any) -> FleetCounts:
    """What one NamespaceStats has counted so far."""
    snap = stats.snapshot()
    return FleetCounts(
        snap["hits"], snap["misses"], snap["errors"], snap["compute_seconds_saved"], snap["uncacheable"]
    )


class _Pusher:
    """The process's one push thread and what each tracked cache had pushed (per namespace)."""

    def __init__(self) -> None:
        self.caches: weakref.WeakKeyDictionary[Any, dict[str, FleetCounts]] = weakref.WeakKeyDictionary()
        self.lock = threading.Lock()  # one push at a time (thread, close(), atexit)
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.failed_logged = False

    def track(self, cache: Any) -> None:
        with self.lock:
            self.caches.setdefault(cache, {})
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="infra-cache-fleet-stats", daemon=True)
                self.thread.start()
        _watch_sigterm()

    def _run(self) -> None:
        while not self.wake.wait(PUSH_INTERVAL):
            self.push_all()

    def push_all(self) -> None:
        for cache in list(self.caches.keys()):
            self.push(cache)

    def push(self, cache: Any, *, closing: bool = False) -> None:
        """Add what ``cache`` counted since its last push to the store (kept for the next try on failure).

        A cache closed other than through ``close()`` (``aclose()`` of a network backend) is skipped: its
        backend is gone, and its counts up to the last tick were pushed."""
        backend = getattr(cache, "backend", None)
        add = getattr(backend, "fleet_add", None)
        if add is None or (cache.closed and not closing):
            return
        with self.lock:
            pushed = self.caches.get(cache)
            if pushed is None:
                return
            deltas: dict[str, FleetCounts] = {}
            now: dict[str, FleetCounts] = {}
            for name, stats in cache.namespace_counters().items():
                if not stats.counting:
                    continue
                total = now[name] = _totals(stats)
                d = total - pushed.get(name, FleetCounts())
                if d:
                    deltas[name] = d
            if not deltas:
                return
            try:
                add(deltas)
            except Exception as exc:
                if not self.failed_logged:
                    self.failed_logged = True
                    log.warning("cache fleet counters not saved (kept for the next try): %s", exc)
                return
            pushed.update(now)

    def after_fork_in_child(self) -> None:
        # The parent pushes what it counted; the child starts from there. The parent's thread is gone.
        self.lock = threading.Lock()
        self.thread = None
        for cache, pushed in list(self.caches.items()):
            for name, stats in cache.namespace_counters().items():
                if stats.counting:
                    pushed[name] = _totals(stats)
        if self.caches:
            self.thread = threading.Thread(target=self._run, name="infra-cache-fleet-stats", daemon=True)
            self.thread.start()


_PUSHER = _Pusher()
atexit.register(_PUSHER.push_all)
_sigterm = {"decided": False}  # the SIGTERM handler: installed or declined, once per process


def _watch_sigterm() -> None:
    """Install ``_push_then_die`` for SIGTERM if that signal still has its default action (see the module
    doc). Only the main thread may set a handler: from another thread this waits for a later ``track``."""
    if _sigterm["decided"] or threading.current_thread() is not threading.main_thread():
        return
    _sigterm["decided"] = True
    from infra.config._loader import env_says_off

    if env_says_off(SIGTERM_PUSH_ENV):
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _push_then_die)
    except (ValueError, OSError, AttributeError) as exc:  # an embedded interpreter, a platform without it
        log.debug("cache fleet counters: no SIGTERM handler installed: %s", exc)


def _push_then_die(signum: int, frame: object) -> None:
    """SIGTERM with the default action wanted: push every tracked cache's last counts, then die by SIGTERM.

    The handler runs in the main thread between two bytecodes, perhaps while that thread holds the push
    lock or a backend's lock, so the push runs on a helper thread that this one waits for at most
    ``SIGTERM_PUSH_TIMEOUT`` seconds: a push that cannot finish is abandoned, never a deadlock."""
    try:
        helper = threading.Thread(target=_PUSHER.push_all, name="infra-cache-fleet-sigterm", daemon=True)
        helper.start()
        helper.join(SIGTERM_PUSH_TIMEOUT)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_PUSHER.after_fork_in_child)


def track(cache: Any) -> None:
    """Push ``cache``'s counts to its store's fleet counters (twice a second, at close and at exit)."""
    if getattr(getattr(cache, "backend", None), "fleet_add", None) is not None:
        _PUSHER.track(cache)


def push_now(cache: Any) -> None:
    """Push ``cache``'s pending deltas now."""
    _PUSHER.push(cache)


def close(cache: Any) -> None:
    """Push ``cache``'s last deltas and stop tracking it (``Cache.close()``, before the backend closes)."""
    _PUSHER.push(cache, closing=True)
    with _PUSHER.lock:
        _PUSHER.caches.pop(cache, None)


def fleet_totals(cache: Any) -> dict[str, FleetCounts] | None:
    """The fleet's totals per namespace from ``cache``'s store, this process's unpushed counts included;
    None when the backend keeps no fleet counters (memory)."""
    read = getattr(getattr(cache, "backend", None), "fleet_read", None)
    if read is None:
        return None
    push_now(cache)
    totals: dict[str, FleetCounts] = dict(read())
    return totals
