"""PostgreSQL cache backend (asyncpg): one store shared by every host that reaches the server.

::

    from infra.cache.backends.postgres import PostgresBackend
    backend = PostgresBackend(dsn="postgresql://cache@db:5432/app", unlogged=True)

Design (the numbers behind each choice are in bench/bench_backends.py):

* **Connections per event loop, no asyncpg pool.** An asyncpg connection belongs to the loop that opened it.
  The async twins run on the caller's loop with that loop's own small connection set (a free list: pop,
  query, push back), so a hit is one round trip with no thread hop; ``asyncpg.Pool`` adds ~40 µs of
  bookkeeping per call on this kind of machine, as much as the query itself, so it is not used. The sync API
  gives each calling thread a private idle loop driven with ``run_until_complete`` (no hand-off to another
  thread); a caller whose thread already runs a loop is served by the backend's private daemon loop through
  ``run_coroutine_threadsafe``. Call ``await backend.aclose()`` on a loop before you close that loop.
* **Schema** is created if missing, under ``pg_advisory_xact_lock`` so hosts starting together don't race
  (concurrent ``CREATE TABLE IF NOT EXISTS`` can still fail with a unique violation on ``pg_type``).
  ``unlogged=True`` makes the entries table UNLOGGED.
* **Generations**: ``invalidate`` is O(1) (a generation bump) and sends a NOTIFY; a LISTEN connection on
  the private loop calls the ``on_invalidate`` callbacks (reconnecting with backoff), so every host drops
  its L1 entries within milliseconds. A hit compares the row's generation with the backend's
  ``GenerationView`` (a snapshot of the generations table loaded after LISTEN, kept current by the
  notifications and reloaded every second) while that listener is connected: the same guarantee the L1
  has, an invalidation made on another host is honoured once its NOTIFY arrives (about 1-2 ms), one made
  here at once, for ~3.5 µs less server time per hit than asking for the generation in the statement.
  Without a connected, loaded listener (``listen=False``, reconnecting, just forked) every read checks the
  generation in the same statement instead, so it is exact whatever the notifications do.
* **Leases** (cross-host single-flight) are rows in an UNLOGGED lease table with an expiry taken from the
  server's clock, set by one atomic ``INSERT .. ON CONFLICT DO UPDATE .. WHERE expired``. Not advisory locks:
  a session lock would pin a connection for the whole computation and be released by a hung-but-connected
  holder never; a lease row frees itself after ``timeout`` whatever the holder does.
* **Housekeeping off the hot path**: access times (LRU) are gathered in memory and written in batches;
  byte caps, expired and stale rows are handled by a maintenance task on the private loop
  (``DELETE .. WHERE ctid IN (SELECT .. LIMIT n)`` batches).
* **Fail-open within the store budget** (``cache.store_budget``, 50 ms; issue 17 item 6): a cached call
  waits at most the budget for a connection (a connect still running after it is left to finish in the
  background, on the loop that owns it, and picked up by a later call) and a watchdog terminates a statement
  running past it (past ``op_timeout`` for housekeeping and writes over ``BIG_WRITE`` bytes). Once the server
  is seen down every call raises ``CacheError`` at once, while a background probe (connect + ``SELECT 1``,
  with backoff from 50 ms to 5 s) tries the server until it answers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from infra.cache import fleet_stats as _fleet
from infra.cache.backend import BackendStats, CacheBackend, EntryInfo, StoredEntry
from infra.cache.backends._common import (
    BIG_WRITE,
    FORKS,
    ReconnectGate,
    backend_kwargs,
    check_identifier,
    holder_is_dead,
    origin_of,
)
from infra.cache.backends._genview import GenerationView
from infra.cache.backends._loops import LoopThread, ThreadLoops
from infra.cache.backends._pgconns import ConnSet, asyncpg_module, is_connection_error, kill_if_stuck
from infra.cache.backends._pgsql import PgStatements
from infra.config.sections.cache import DEFAULT_STORE_BUDGET
from infra.errors import CacheError

if TYPE_CHECKING:
    import asyncpg

    from infra.config.sections.cache import CacheConfig

__all__ = ["PostgresBackend", "from_settings"]

log = logging.getLogger("infra.cache")
T = TypeVar("T")

#: rows per housekeeping batch (purge / eviction), so no statement holds locks for long
_BATCH = 500
#: up to this many pending LRU touches are kept; older ones are dropped (LRU becomes approximate, never wrong)
_MAX_TOUCHES = 50_000


class PostgresBackend(CacheBackend):
    """The ``"postgres"`` backend. See the module docstring for the design and its reasons."""

    name: ClassVar[str] = "postgres"
    shared: ClassVar[bool] = True

    def __init__(
        self,
        *,
        dsn: str,
        table: str = "perf_cache",
        unlogged: bool = False,
        max_bytes: int | None = None,
        namespace_max_bytes: Mapping[str, int] | None = None,
        max_connections: int = 4,
        connect_timeout: float = 2.0,
        op_timeout: float = 5.0,
        maintenance_interval: float = 5.0,
        listen: bool = True,
        sync_mode: str = "thread_loop",
        async_mode: str = "caller_loop",
        budget: float = DEFAULT_STORE_BUDGET,
    ) -> None:
        if not dsn:
            raise ValueError("the postgres cache backend needs a dsn (cache.dsn in perf_config.json)")
        if sync_mode not in ("thread_loop", "private_loop"):
            raise ValueError(f"sync_mode must be 'thread_loop' or 'private_loop', got {sync_mode!r}")
        if async_mode not in ("caller_loop", "private_loop"):
            raise ValueError(f"async_mode must be 'caller_loop' or 'private_loop', got {async_mode!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections!r}")
        if not budget > 0:
            raise ValueError(f"budget must be > 0 seconds, got {budget!r}")
        self._budget = budget
        self._dsn = dsn
        self.sql = PgStatements(check_identifier(table, "postgres cache table prefix"), unlogged)
        self.origin = origin_of(dsn)
        self._max_bytes = max_bytes
        self._ns_caps = dict(namespace_max_bytes or {})
        self._max_conns = max_connections
        self._connect_timeout = connect_timeout
        self._op_timeout = op_timeout
        self._interval = maintenance_interval
        self._listen_wanted = listen
        self._sync_private = sync_mode == "private_loop"
        self._async_private = async_mode == "private_loop"
        self.gate = ReconnectGate("postgres", self.origin, probe=self._probe)
        self._sql_get = self.sql.get
        self._sql_get_hot = self.sql.get_hot
        self._callbacks: list[Callable[[str, int], None]] = []
        self._change_callbacks: list[Callable[[str, int], None]] = []
        self._state_lock = threading.Lock()
        self._listen_epoch = 0  # never reset (not even at fork): Cache compares it to spot a resubscribe
        self._reset_state()

    def _reset_state(self) -> None:
        self._fork = FORKS[0]
        self._sets: dict[asyncio.AbstractEventLoop, ConnSet] = {}
        self._private = LoopThread("infra-cache-postgres")
        self._threads = ThreadLoops()
        self._schema_ready = False
        # LRU access times to write in the next batch: a bounded deque (append is one C call on the hit path;
        # past the bound the oldest touches are dropped: LRU becomes approximate, never wrong)
        self._touches: collections.deque[tuple[str, str]] = collections.deque(maxlen=_MAX_TOUCHES)
        self._writes = 0
        self._closed = False
        self._bg_started = False
        self._stuck: dict[tuple[Any, int], float] = {}  # (connection, statements started) -> first seen busy
        self._long: set[Any] = set()  # connections running a statement allowed op_timeout, not the budget
        self._listener: Any = None
        self._wake: asyncio.Event | None = None
        self._view = GenerationView()  # not live until this process's listener has loaded it

    @classmethod
    def from_settings(cls, settings: CacheConfig, **overrides: Any) -> PostgresBackend:
        """Build from ``CacheConfig`` (dsn, ``cache.postgres`` options, total and per-namespace byte caps);
        ``overrides`` win."""
        return cls(**backend_kwargs(settings, settings.postgres, **{"dsn": settings.dsn, **overrides}))

    def __repr__(self) -> str:
        s = self.sql
        return f"PostgresBackend(origin={self.origin!r}, table={s.prefix!r}, unlogged={s.unlogged})"

    # ================================================================== plumbing
    async def _connect(self) -> asyncpg.Connection:
        apg = asyncpg_module()
        conn = await apg.connect(
            self._dsn,
            timeout=self._connect_timeout,
            # no command_timeout: asyncpg arms a timer per statement (~9 µs, as much as the rest of our
            # overhead); the watchdog task terminates a statement stuck past op_timeout instead
            server_settings={"application_name": "infra-cache"},
        )
        if not self._schema_ready:
            try:
                await self._create_schema(conn)
            except BaseException:
                conn.terminate()
                raise
        return conn

    def _probe(self) -> None:
        """The gate's background probe (its own thread and loop): connect, ``SELECT 1``, close."""

        async def probe() -> None:
            conn = await asyncpg_module().connect(self._dsn, timeout=self._connect_timeout)
            try:
                await conn.fetchval("SELECT 1", timeout=self._op_timeout)
            finally:
                conn.terminate()

        asyncio.run(probe())

    async def _prepare(self, conn: asyncpg.Connection) -> tuple[Any, Any]:
        try:
            # a timeout of their own: the watchdog only sees connections already in a set
            t = self._op_timeout
            return (
                await conn.prepare(self._sql_get, timeout=t),
                await conn.prepare(self._sql_get_hot, timeout=t),
            )
        except asyncpg_module().UndefinedTableError:
            self._schema_ready = False  # dropped under us: recreate on the next connection
            raise

    def _hit_failed(self, cs: ConnSet, conn: asyncpg.Connection, exc: Exception) -> CacheError:
        """A hit path's statement failed: the connection goes (its prepared statements may be what broke:
        a table dropped or altered), and the error is counted by the gate."""
        cs.discard(conn)
        if isinstance(exc, asyncpg_module().UndefinedTableError):
            self._schema_ready = False
        return self.gate.failed(exc, connection=is_connection_error(exc))

    async def _create_schema(self, conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            # advisory lock: hosts starting together would otherwise race on CREATE TABLE IF NOT EXISTS
            await conn.execute("SELECT pg_advisory_xact_lock($1)", self.sql.schema_lock)
            for stmt in self.sql.schema():
                await conn.execute(stmt)
        self._schema_ready = True

    def _conn_set(self, loop: asyncio.AbstractEventLoop) -> ConnSet:
        cs = self._sets.get(loop)
        if cs is None:
            with self._state_lock:
                for old in [lp for lp in self._sets if lp.is_closed()]:
                    del self._sets[old]  # its loop is gone: nothing more can be done with its sockets
                cs = self._sets.get(loop)
                if cs is None:
                    cs = self._sets[loop] = ConnSet(self, loop, self._max_conns)
        return cs

    async def _run(self, fn: Callable[..., Awaitable[T]], *args: Any, long: bool = False) -> T:
        """Run ``fn(conn, *args)`` on the running loop's connection set; map driver errors to CacheError.
        ``long``: the statement may run for ``op_timeout`` (housekeeping, big writes), not the budget."""
        if self._fork != FORKS[0]:
            self._after_fork()
        self.gate.check()
        if self._closed:
            raise CacheError("postgres cache backend is closed")
        cs = self._conn_set(asyncio.get_running_loop())
        try:
            # housekeeping (and a CLI's first command) may wait for a connect as long as a connect may take
            conn = await cs.acquire(self._connect_timeout + self._op_timeout if long else None)
        except CacheError:
            raise
        except Exception as exc:
            raise self.gate.failed(exc, connection=True) from exc
        if long:
            self._long.add(conn)
        try:
            result = await fn(conn, *args)
        except Exception as exc:
            self._long.discard(conn)
            conn_err = is_connection_error(exc)
            if conn_err:
                cs.discard(conn)
            else:
                cs.release(conn)
                if isinstance(exc, asyncpg_module().UndefinedTableError):
                    self._schema_ready = False  # dropped under us: recreate on the next connection
            raise self.gate.failed(exc, connection=conn_err) from exc
        if long:
            self._long.discard(conn)
        cs.release(conn)
        self.gate.ok()
        return result

    def _sync(self, fn: Callable[..., Awaitable[T]], *args: Any, long: bool = False) -> T:
        """The sync API: on this thread's own loop, or on the private loop when this thread runs one."""
        if self._fork != FORKS[0]:
            self._after_fork()
        if self._writes or self._touches:
            self._ensure_background()
        if not self._sync_private:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                try:
                    return self._threads.run(self._run(fn, *args, long=long))
                except RuntimeError as exc:  # the thread's loop was closed by close()
                    raise CacheError(f"postgres cache backend unusable: {exc}") from exc
        if self._private.in_loop_thread():
            raise CacheError(
                "sync cache call from the backend's own loop thread (an on_invalidate callback?)"
            )
        # the statement and the connection wait are bounded already; this bounds the hand-off as well
        limit = self._op_timeout + self._connect_timeout + 1.0 if long else 2 * self._budget + 0.05
        try:
            return self._private.run(self._run(fn, *args, long=long), limit)
        except TimeoutError as exc:
            raise self.gate.failed(exc) from exc

    async def _async(self, fn: Callable[..., Awaitable[T]], *args: Any, long: bool = False) -> T:
        if self._writes or self._touches:
            self._ensure_background()
        if self._async_private:
            return await asyncio.wrap_future(self._private.submit(self._run(fn, *args, long=long)))
        return await self._run(fn, *args, long=long)

    def _after_fork(self, *, listen: bool = True) -> None:
        # The parent's sockets are shared with the child: never close them from here (that would end the
        # parent's sessions); keep the objects referenced so their finalizers never run, and start afresh.
        _FORK_GRAVEYARD.append((self._sets, self._private, self._threads))
        self._reset_state()
        if listen and self._callbacks:
            self._ensure_background()  # the parent's LISTEN connection is not ours: listen afresh

    # ================================================================== background: LISTEN + maintenance
    def _ensure_background(self) -> None:
        if self._bg_started or self._closed:
            return
        with self._state_lock:
            if self._bg_started:
                return
            self._bg_started = True
        self._private.submit(self._background())

    async def _background(self) -> None:
        loop = asyncio.get_running_loop()
        self._bg_stop = asyncio.Event()
        tasks = [loop.create_task(self._maintain_forever()), loop.create_task(self._watchdog())]
        if self._listen_wanted:
            tasks.append(loop.create_task(self._listen_forever()))
        self._bg_tasks = tasks
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watchdog(self) -> None:
        """Terminate connections whose statement has run past the budget (``op_timeout`` for long ones: a
        hung server): the caller then gets ``CacheError`` and fails open.

        Costs the hit path nothing: asyncpg's per-statement timer costs ~9 µs, and even noting each
        statement's start here cost ~0.8 µs per hit on this kind of VM. Instead, every tick looks at the
        connections that are out of their idle lists together with the count of statements each has started
        (asyncpg's protocol counts them); one seen busy with the same count for ``op_timeout`` is stuck."""
        # a tick every eighth of the budget (6.25 ms by default: one look at a few connections, ~160 cheap
        # wake-ups a second on the private loop); a statement is cut once seen busy for the budget less one
        # tick, i.e. between 7/8 and 9/8 of the budget after it started
        period = min(0.25, self._budget / 8, self._op_timeout / 8)
        while not await _wait(self._bg_stop, period):
            try:
                self._watch_tick(period)
            except Exception:  # the watchdog must outlive anything a tick meets (it once died on a
                log.debug("postgres cache watchdog tick failed", exc_info=True)  # terminated connection)

    def _watch_tick(self, period: float) -> None:
        now = time.monotonic()
        seen: dict[tuple[Any, int], float] = {}
        long = self._long
        for cs in list(self._sets.values()):
            if cs.loop.is_closed():
                continue
            for conn, started in cs.busy():
                if started < 0:
                    continue  # terminated already
                first = seen[conn, started] = self._stuck.get((conn, started), now)
                if now - first >= (self._op_timeout if conn in long else self._budget) - period:
                    cs.loop.call_soon_threadsafe(kill_if_stuck, cs, conn, started)
        self._stuck = seen

    async def _listen_forever(self) -> None:
        """Keep one LISTEN connection; after a loss, reconnect with backoff (notifications missed meanwhile
        are covered by ``Cache`` polling ``generations()``)."""
        delay = 0.05
        while not self._bg_stop.is_set():
            lost = self._wake = asyncio.Event()
            view = self._view
            try:
                conn = await self._connect()
                conn.add_termination_listener(lambda _c, ev=lost, v=view: (v.lost(), ev.set()))
                await conn.add_listener(self.sql.channel, self._on_notify)
                await self._load_view(conn, view)  # after LISTEN: nothing committed since can be missed
            except Exception as exc:
                view.lost()
                log.debug("postgres cache LISTEN connect failed: %s", exc)
                if await _wait(self._bg_stop, delay):
                    return
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.05
            self._listen_epoch += 1
            self._listener = conn
            try:
                while not lost.is_set() and not self._bg_stop.is_set():
                    if not await _wait(lost, 1.0):
                        # a dead socket that never said so: the reload notices it (and catches a
                        # generation the server lost, tables dropped and made again, which no NOTIFY tells)
                        try:
                            await self._load_view(conn, view)
                        except Exception:
                            lost.set()
            finally:
                view.lost()
                self._listener = None
                if not conn.is_closed():
                    if self._bg_stop.is_set():
                        try:
                            await asyncio.wait_for(conn.close(), 1.0)
                        except Exception:
                            conn.terminate()
                    else:
                        conn.terminate()

    async def _load_view(self, conn: asyncpg.Connection, view: GenerationView) -> None:
        mark = view.mark()
        rows = await conn.fetch(self.sql.generations, timeout=self._op_timeout)
        view.load({r[0]: int(r[1]) for r in rows}, mark)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        gen, _, ns = payload.partition(":")
        if gen.startswith("c"):  # a change count (delete, clear, replacing set), not a generation
            try:
                count = int(gen[1:])
            except ValueError:
                return
            for ccb in list(self._change_callbacks):
                try:
                    ccb(ns, count)
                except Exception:
                    log.exception("on_change callback failed")
            return
        try:
            generation = int(gen)
        except ValueError:
            return
        self._view.bump(ns, generation)
        for cb in list(self._callbacks):
            try:
                cb(ns, generation)
            except Exception:
                log.exception("on_invalidate callback failed")

    async def _maintain_forever(self) -> None:
        idle_rounds = 0
        while not self._bg_stop.is_set():
            if await _wait(self._bg_stop, self._interval):
                return
            busy = self._writes > 0 or len(self._touches) > 0
            idle_rounds = 0 if busy else idle_rounds + 1
            if not busy and idle_rounds % 12:
                continue
            with contextlib.suppress(CacheError):
                await self._run(self._maintain, long=True)

    async def _maintain(self, conn: asyncpg.Connection) -> None:
        """Flush LRU touches, enforce byte caps, purge one batch of dead rows."""
        await self._flush_touches(conn)
        self._writes = 0
        if self._max_bytes or self._ns_caps:
            await self._enforce_caps(conn)
        await self._purge(conn, _BATCH)

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
        usage = {r[0]: int(r[2]) for r in await conn.fetch(self.sql.usage)}
        evicted = 0
        for ns, cap in self._ns_caps.items():
            for _ in range(100):  # bounded: 5000 rows per statement
                if usage.get(ns, 0) <= cap:
                    break
                sizes = await conn.fetch(self.sql.evict_lru(True), usage[ns] - cap, ns)
                if not sizes:
                    break
                usage[ns] -= sum(r[0] for r in sizes)
                evicted += len(sizes)
        if self._max_bytes:
            total = sum(usage.values())
            for _ in range(100):
                if total <= self._max_bytes:
                    break
                sizes = await conn.fetch(self.sql.evict_lru(False), total - self._max_bytes)
                if not sizes:
                    break
                total -= sum(r[0] for r in sizes)
                evicted += len(sizes)
        return evicted

    async def _purge(self, conn: asyncpg.Connection, limit: int) -> int:
        status = await conn.execute(self.sql.purge, time.time(), limit)
        await conn.execute(self.sql.purge_leases)
        return _count(status)

    # ================================================================== queries (conn first)
    async def _q_get(self, conn: asyncpg.Connection, ns: str, key: str) -> StoredEntry | None:
        view = self._view
        if view.live:
            row = await conn.fetchrow(self._sql_get_hot, ns, key)
            if row is None or (row[2] is not None and row[2] <= time.time()):
                return None
            verdict = _current(view, ns, row[4])
            if verdict:
                return StoredEntry(row[1], row[0], row[2], row[3])
            if verdict is not None:
                return None
        row = await conn.fetchrow(self._sql_get, ns, key)
        if row is None or (row[2] is not None and row[2] <= time.time()):
            return None
        return StoredEntry(row[1], row[0], row[2], row[3])

    async def _q_get_many(self, conn: asyncpg.Connection, ns: str, keys: list[str]) -> dict[str, StoredEntry]:
        rows = await conn.fetch(self.sql.get_many, ns, keys, time.time())
        return {r[0]: StoredEntry(r[2], r[1], r[3], r[4]) for r in rows}

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
        gen = int(row[0])
        self._view.bump(ns, gen)  # before returning: our own next read must not serve the old generation
        return gen

    async def _q_generations(self, conn: asyncpg.Connection) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in await conn.fetch(self.sql.generations)}

    async def _q_versions(self, conn: asyncpg.Connection) -> dict[str, tuple[int, int]]:
        return {r[0]: (int(r[1]), int(r[2])) for r in await conn.fetch(self.sql.versions)}

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
        by_ns = {r[0]: (int(r[1]), int(r[2])) for r in rows}
        return BackendStats(
            entries=sum(v[0] for v in by_ns.values()),
            bytes=sum(v[1] for v in by_ns.values()),
            by_namespace=by_ns,
            extra={
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
        return [EntryInfo(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]

    async def _q_vacuum(self, conn: asyncpg.Connection) -> None:
        for t in (self.sql.entries, self.sql.gens, self.sql.leases):
            await conn.execute(f"VACUUM {t}")

    async def _q_maintain(self, conn: asyncpg.Connection) -> int:
        await self._flush_touches(conn)
        return await self._enforce_caps(conn)

    # ================================================================== the CacheBackend API (sync)
    def get(self, namespace: str, key: str) -> StoredEntry | None:
        if self._fork != FORKS[0]:
            self._after_fork()  # before touching this thread's loop: its epoll fd is the parent's
        if not self._sync_private and self._bg_started and asyncio._get_running_loop() is None:
            # The hit path: this thread's idle loop runs the driver's coroutine itself, as a user's own
            # run_until_complete(conn.fetchrow(...)) would: no coroutine of ours around it. The lock is only
            # ever contended by close() from another thread. Mirrors aget (kept inline: every call
            # level costs ~0.3 µs on a loop that just woke from epoll).
            own = self._threads.get()
            cs = self._sets.get(own.loop)
            if cs is not None and cs.idle and not self.gate._down_until and own.lock.acquire(blocking=False):
                try:
                    if self._closed or cs.closed or not cs.idle:
                        raise CacheError("postgres cache backend is closed")
                    view = self._view
                    hot = view.live
                    conn = cs.idle.pop()
                    try:
                        row = own.loop.run_until_complete(cs.conns[conn][hot].fetchrow(namespace, key))
                    except Exception as exc:
                        raise self._hit_failed(cs, conn, exc) from exc
                    if cs.closed:
                        cs.release(conn)
                    else:
                        cs.idle.append(conn)  # no waiters: nothing else runs on this thread's loop now
                finally:
                    own.lock.release()
                if self.gate._delay:
                    self.gate.ok()
                if row is None or (row[2] is not None and row[2] <= time.time()):
                    return None
                if not hot or (row[4] == view.gens.get(namespace, 0) and view.live):
                    self._touches.append((namespace, key))
                    return StoredEntry(row[1], row[0], row[2], row[3])
                if _current(view, namespace, row[4]) is False:
                    return None
                # the view can't tell: the exact statement below can
        e = self._sync(self._q_get, namespace, key)
        if e is not None:
            self._touches.append((namespace, key))
        return e

    async def _get_slow(self, namespace: str, key: str) -> StoredEntry | None:
        """``aget``'s general path: the exact statement through the usual plumbing."""
        e = await self._async(self._q_get, namespace, key)
        if e is not None:
            self._touches.append((namespace, key))
        return e

    def get_many(self, namespace: str, keys: Iterable[str]) -> dict[str, StoredEntry]:
        keys = list(keys)
        return self._sync(self._q_get_many, namespace, keys) if keys else {}

    def touch(self, namespace: str, key: str) -> None:
        self._touches.append((namespace, key))

    def set(self, namespace: str, key: str, entry: StoredEntry) -> None:
        self._sync(self._q_set, namespace, key, entry, long=len(entry.payload) > BIG_WRITE)

    def set_many(self, namespace: str, items: Mapping[str, StoredEntry]) -> None:
        if items:
            big = sum(len(e.payload) for e in items.values()) > BIG_WRITE
            self._sync(self._q_set_many, namespace, items, long=big)

    def delete(self, namespace: str, key: str) -> bool:
        return self._sync(self._q_delete, namespace, key)

    def invalidate(self, namespace: str) -> int:
        return self._sync(self._q_invalidate, namespace)

    def generations(self) -> dict[str, int]:
        return self._sync(self._q_generations)

    def versions(self) -> dict[str, tuple[int, int]]:
        return self._sync(self._q_versions)

    def on_invalidate(self, callback: Callable[[str, int], None]) -> None:
        """Call ``callback(namespace, generation)`` (on the backend's private thread) for every invalidation
        any host makes, this one included."""
        self._callbacks.append(callback)
        self._ensure_background()

    def on_change(self, callback: Callable[[str, int], None]) -> None:
        """Call ``callback(namespace, change count)`` (on the backend's private thread) for every delete,
        clear and replacing set any host makes, this one included."""
        self._change_callbacks.append(callback)

    def push_state(self) -> int | None:
        if self._fork != FORKS[0]:
            # a forked child whose Cache answers from L1 might never call us otherwise: listen afresh now
            # (Cache asks every 0.1 s)
            if not self._closed:
                self._after_fork()
            return None
        return self._listen_epoch if self._listener is not None else None

    def purge(self, limit: int = 1000) -> int:
        return self._sync(self._purge, limit, long=True)

    def clear(self, namespace: str | None = None) -> int:
        return self._sync(self._q_clear, namespace, long=True)

    def vacuum(self) -> None:
        self._sync(self._q_vacuum, long=True)

    def maintain(self) -> int:
        """Flush LRU touches and enforce the byte caps now (normally done in the background); returns the
        number of entries evicted."""
        return self._sync(self._q_maintain, long=True)

    def acquire_lease(self, namespace: str, key: str, owner: str, timeout: float) -> bool:
        return self._sync(self._q_acquire, namespace, key, owner, timeout)

    def release_lease(self, namespace: str, key: str, owner: str) -> None:
        self._sync(self._q_release, namespace, key, owner)

    # -- fleet-wide counters (infra.cache.fleet_stats): table {prefix}_fleet_stats, <= 2 pushes a second;
    # housekeeping, so the long timeouts (not the cached call's budget)
    def fleet_add(self, deltas: Mapping[str, _fleet.FleetCounts]) -> None:
        self._sync(_fleet.pg_add, self.sql.prefix, deltas, long=True)

    def fleet_read(self) -> dict[str, _fleet.FleetCounts]:
        return self._sync(_fleet.pg_read, self.sql.prefix, long=True)

    def fleet_reset(self, namespace: str | None = None) -> None:
        self._sync(_fleet.pg_reset, self.sql.prefix, namespace, long=True)

    def stats(self) -> BackendStats:
        return self._sync(self._q_stats, long=True)

    def inspect(self, namespace: str | None = None, limit: int = 20) -> list[EntryInfo]:
        return self._sync(self._q_inspect, namespace, limit, long=True)

    # ================================================================== async twins (native, caller's loop)
    async def aget(self, namespace: str, key: str) -> StoredEntry | None:
        if self._async_private or not self._bg_started:
            return await self._get_slow(namespace, key)
        # the hit path, plumbing inlined (one coroutine: ours around the driver's); anything unusual takes
        # the general path
        cs = self._sets.get(asyncio.get_running_loop())
        if cs is None or not cs.idle or self.gate._down_until or self._fork != FORKS[0] or self._closed:
            return await self._get_slow(namespace, key)
        view = self._view
        hot = view.live
        conn = cs.idle.pop()
        try:
            row = await cs.conns[conn][hot].fetchrow(namespace, key)
        except Exception as exc:
            raise self._hit_failed(cs, conn, exc) from exc
        if cs.waiters or cs.closed:
            cs.release(conn)
        else:
            cs.idle.append(conn)
        if self.gate._delay:
            self.gate.ok()
        if row is None or (row[2] is not None and row[2] <= time.time()):
            return None
        if hot and (row[4] != view.gens.get(namespace, 0) or not view.live):
            if _current(view, namespace, row[4]) is False:
                return None  # a generation the view knows is over
            return await self._get_slow(namespace, key)  # the view can't tell: the exact statement can
        self._touches.append((namespace, key))
        return StoredEntry(row[1], row[0], row[2], row[3])

    async def aget_many(self, namespace: str, keys: Iterable[str]) -> dict[str, StoredEntry]:
        keys = list(keys)
        return await self._async(self._q_get_many, namespace, keys) if keys else {}

    async def aset(self, namespace: str, key: str, entry: StoredEntry) -> None:
        await self._async(self._q_set, namespace, key, entry, long=len(entry.payload) > BIG_WRITE)

    async def aset_many(self, namespace: str, items: Mapping[str, StoredEntry]) -> None:
        if items:
            big = sum(len(e.payload) for e in items.values()) > BIG_WRITE
            await self._async(self._q_set_many, namespace, items, long=big)

    async def adelete(self, namespace: str, key: str) -> bool:
        return await self._async(self._q_delete, namespace, key)

    async def ainvalidate(self, namespace: str) -> int:
        return await self._async(self._q_invalidate, namespace)

    async def agenerations(self) -> dict[str, int]:
        return await self._async(self._q_generations)

    async def aversions(self) -> dict[str, tuple[int, int]]:
        return await self._async(self._q_versions)

    async def aacquire_lease(self, namespace: str, key: str, owner: str, timeout: float) -> bool:
        return await self._async(self._q_acquire, namespace, key, owner, timeout)

    async def arelease_lease(self, namespace: str, key: str, owner: str) -> None:
        await self._async(self._q_release, namespace, key, owner)

    async def apurge(self, limit: int = 1000) -> int:
        return await self._async(self._purge, limit, long=True)

    async def astats(self) -> BackendStats:
        return await self._async(self._q_stats, long=True)

    # ================================================================== closing
    async def arelease_loop(self) -> None:
        """Close this loop's connections gracefully; the backend stays usable (sync, and other loops)."""
        cs = self._sets.pop(asyncio.get_running_loop(), None)
        if cs is not None:
            await cs.aclose()

    async def aclose(self) -> None:
        """Close this loop's connections gracefully, then everything else (``close``)."""
        await self.arelease_loop()
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def close(self) -> None:
        """Stop the background tasks and close every connection this backend opened. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.gate.close()
        if self._fork != FORKS[0]:
            self._after_fork(listen=False)
            self._closed = True  # (the reset reopened it)
            return
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        private = self._private.loop if self._private.started else None
        with self._state_lock:
            sets, self._sets = self._sets, {}
        for loop, cs in sets.items():
            if loop.is_closed() or loop is private:
                continue
            if loop is current:
                cs.terminate()
            elif loop.is_running():
                loop.call_soon_threadsafe(cs.terminate)
        thread_sets = {lp: cs for lp, cs in sets.items() if not lp.is_running() and not lp.is_closed()}

        async def close_thread_loop(loop: asyncio.AbstractEventLoop) -> None:
            cs = thread_sets.get(loop)
            if cs is not None:
                await cs.aclose()

        self._threads.close_all(close_thread_loop)
        private_set = sets.get(private) if private is not None else None

        async def close_private() -> None:
            tasks = list(getattr(self, "_bg_tasks", []))
            stop = getattr(self, "_bg_stop", None)
            if stop is not None:
                stop.set()
                wake = getattr(self, "_wake", None)
                if wake is not None:
                    wake.set()
            if tasks:
                # let them finish (a connect in flight can't be cancelled cleanly: asyncpg leaks its socket)
                _done, pending = await asyncio.wait(tasks, timeout=self._connect_timeout + 1.0)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if private_set is not None:
                await private_set.aclose()
            # let aborted transports and asyncpg's cancel requests finish before the loop stops
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if others:
                await asyncio.wait(others, timeout=1.0)
            await asyncio.sleep(0.01)

        self._private.stop(close_private)


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; True if it was set."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except asyncio.TimeoutError:
        return event.is_set()
    return True


def _current(view: GenerationView, namespace: str, generation: int) -> bool | None:
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


#: per-process state left behind at fork (see ``PostgresBackend._after_fork``)
_FORK_GRAVEYARD: list[Any] = []


def from_settings(settings: CacheConfig) -> PostgresBackend:
    """The factory ``infra.cache.core.make_backend`` calls for ``"backend": "postgres"``."""
    return PostgresBackend.from_settings(settings)
