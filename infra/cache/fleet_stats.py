"""Fleet-wide cache counters: hits, misses, errors and compute-seconds-saved per namespace, kept in the store.

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

A process killed with SIGKILL loses at most its last half second of counts. Backends take part through three
small methods, ``fleet_add(deltas)``, ``fleet_read()`` and ``fleet_reset(namespace)``, built on the
helpers below (SQLite, PostgreSQL, Redis); a backend without them (memory) has no fleet counters.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PUSH_INTERVAL",
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


@dataclass(frozen=True, slots=True)
class FleetCounts:
    """Counts of one namespace (a delta to add, or the fleet's totals)."""

    hits: int = 0
    misses: int = 0
    errors: int = 0
    compute_seconds_saved: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.hits or self.misses or self.errors or self.compute_seconds_saved)

    def __add__(self, other: FleetCounts) -> FleetCounts:
        return FleetCounts(
            self.hits + other.hits,
            self.misses + other.misses,
            self.errors + other.errors,
            self.compute_seconds_saved + other.compute_seconds_saved,
        )

    def __sub__(self, other: FleetCounts) -> FleetCounts:
        return FleetCounts(
            self.hits - other.hits,
            self.misses - other.misses,
            self.errors - other.errors,
            self.compute_seconds_saved - other.compute_seconds_saved,
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
            "compute_seconds_saved": round(self.compute_seconds_saved, 6),
        }


# ---------------------------------------------------------------------------------------------- SQLite
SQLITE_TABLE = "fleet_stats"
_SQLITE_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {SQLITE_TABLE} (namespace TEXT PRIMARY KEY, hits INTEGER NOT NULL, "
    "misses INTEGER NOT NULL, errors INTEGER NOT NULL, saved REAL NOT NULL)"
)
_SQLITE_ADD = (
    f"INSERT INTO {SQLITE_TABLE} (namespace, hits, misses, errors, saved) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(namespace) DO UPDATE SET hits = hits + excluded.hits, misses = misses + excluded.misses, "
    "errors = errors + excluded.errors, saved = saved + excluded.saved"
)


def sqlite_add(conn: Any, deltas: Mapping[str, FleetCounts]) -> None:
    """Add ``deltas`` inside the caller's write transaction (``conn`` is a sqlite3 connection)."""
    conn.execute(_SQLITE_SCHEMA)
    conn.executemany(
        _SQLITE_ADD,
        [(ns, d.hits, d.misses, d.errors, d.compute_seconds_saved) for ns, d in sorted(deltas.items())],
    )


def sqlite_read(conn: Any) -> dict[str, FleetCounts]:
    try:
        rows = conn.execute(f"SELECT namespace, hits, misses, errors, saved FROM {SQLITE_TABLE}").fetchall()
    except Exception as exc:  # no push yet: the table does not exist
        if "no such table" in str(exc):
            return {}
        raise
    return {ns: FleetCounts(int(h), int(m), int(e), float(s)) for ns, h, m, e, s in rows}


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
        "misses bigint NOT NULL, errors bigint NOT NULL, saved double precision NOT NULL)"
    )
    await conn.executemany(
        f"INSERT INTO {t} AS f (namespace, hits, misses, errors, saved) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (namespace) DO UPDATE SET hits = f.hits + excluded.hits, "
        "misses = f.misses + excluded.misses, errors = f.errors + excluded.errors, "
        "saved = f.saved + excluded.saved",
        [(ns, d.hits, d.misses, d.errors, d.compute_seconds_saved) for ns, d in sorted(deltas.items())],
    )


async def pg_read(conn: Any, prefix: str) -> dict[str, FleetCounts]:
    exists = await conn.fetchval("SELECT to_regclass($1)", _pg_table(prefix))
    if exists is None:
        return {}
    rows = await conn.fetch(f"SELECT namespace, hits, misses, errors, saved FROM {_pg_table(prefix)}")
    return {ns: FleetCounts(int(h), int(m), int(e), float(saved)) for ns, h, m, e, saved in rows}


async def pg_reset(conn: Any, prefix: str, namespace: str | None) -> None:
    if await conn.fetchval("SELECT to_regclass($1)", _pg_table(prefix)) is None:
        return
    if namespace is None:
        await conn.execute(f"DELETE FROM {_pg_table(prefix)}")
    else:
        await conn.execute(f"DELETE FROM {_pg_table(prefix)} WHERE namespace = $1", namespace)


# ----------------------------------------------------------------------------------------------- Redis
# One hash, ``{prefix}:fleet``, field ``<namespace>\x1f<counter>``: a push is one MULTI of HINCRBY(FLOAT)s.
_FIELDS = ("hits", "misses", "errors", "saved")


def redis_add(client: Any, key: str, deltas: Mapping[str, FleetCounts]) -> None:
    with client.pipeline(transaction=True) as p:
        for ns, d in sorted(deltas.items()):
            for name, v in zip(_FIELDS, (d.hits, d.misses, d.errors), strict=False):
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
    return {
        ns: FleetCounts(
            int(v.get("hits", 0)), int(v.get("misses", 0)), int(v.get("errors", 0)), v.get("saved", 0.0)
        )
        for ns, v in acc.items()
    }


def redis_reset(client: Any, key: str, namespace: str | None) -> None:
    if namespace is None:
        client.delete(key)
    else:
        client.hdel(key, *(f"{namespace}\x1f{n}" for n in _FIELDS))


# ------------------------------------------------------------------------------------------ the pusher
def _totals(stats: Any) -> FleetCounts:
    """What one NamespaceStats has counted so far."""
    snap = stats.snapshot()
    return FleetCounts(snap["hits"], snap["misses"], snap["errors"], snap["compute_seconds_saved"])


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
