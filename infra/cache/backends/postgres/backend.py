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
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from infra.cache import fleet_stats as _fleet
from infra.cache.backends.base import (
    BIG_WRITE,
    FORKS,
    BackendStats,
    CacheBackend,
    EntryInfo,
    StoredEntry,
    backend_kwargs,
    check_identifier,
    origin_of,
)
from infra.cache.backends.gate import ReconnectGate
from infra.cache.backends.postgres.background import PgBackground
from infra.cache.backends.postgres.conns import (
    ConnPlan,
    ConnSet,
    asyncpg_module,
    is_connection_error,
)
from infra.cache.backends.postgres.genview import GenerationView
from infra.cache.backends.postgres.loops import LoopThread, ThreadLoops
from infra.cache.backends.postgres.queries import Ask, hot_entry, live_entry
from infra.cache.backends.postgres.sql import PgStatements
from infra.config.sections.cache import DEFAULT_STORE_BUDGET
from infra.errors import CacheError

if TYPE_CHECKING:
    import asyncpg
    from typing_extensions import Unpack

    from infra.cache.backends.options import PostgresOverrides
    from infra.config.sections.cache import CacheConfig

__all__ = ["PostgresBackend", "from_settings"]

T = TypeVar("T")

#: up to this many pending LRU touches are kept; older ones are dropped (LRU becomes approximate, never wrong)
_MAX_TOUCHES = 50_000


class PostgresBackend(PgBackground, CacheBackend):
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
        self._plan = ConnPlan(
            connect=self._connect,
            prepare=self._prepare,
            opened=self._ensure_background,
            budget=budget,
            connect_timeout=connect_timeout,
            max_size=max_connections,
        )
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
    def from_settings(cls, settings: CacheConfig, **overrides: Unpack[PostgresOverrides]) -> PostgresBackend:
        """Build from ``CacheConfig`` (dsn, ``cache.postgres`` options, total and per-namespace byte caps);
        ``overrides`` win."""
        return cls(**backend_kwargs(settings, settings.postgres, **{"dsn": settings.dsn, **overrides}))

    def __repr__(self) -> str:
        s = self.sql
        return f"PostgresBackend(origin={self.origin!r}, table={s.prefix!r}, unlogged={s.unlogged})"

    @property
    def max_connections(self) -> int:
        """Connections per event loop at most."""
        return self._plan.max_size

    @property
    def op_timeout(self) -> float:
        """How long housekeeping and big writes may take (a cached call's own wait is the budget)."""
        return self._op_timeout

    @property
    def generation_view(self) -> GenerationView:
        """The namespace generations as this process last heard them (``live`` while they can be
        trusted: the LISTEN connection is up and its snapshot loaded)."""
        return self._view

    @property
    def listener_pid(self) -> int | None:
        """The server process of the LISTEN connection, None while not listening (to find it among the
        server's sessions)."""
        conn = self._listener
        return None if conn is None else int(conn.get_server_pid())

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
                    cs = self._sets[loop] = ConnSet(self._plan, loop)
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

    # ================================================================== the CacheBackend API (sync)
    def get(self, namespace: str, key: str) -> StoredEntry | None:
        if self._fork != FORKS[0]:
            self._after_fork()  # before touching this thread's loop: its epoll fd is the parent's
        # Seam: asyncio._get_running_loop() is the C accessor get_running_loop() wraps; the public one
        # raises RuntimeError when no loop runs, i.e. on every call of this (sync) path: ~1 µs a hit.
        if not self._sync_private and self._bg_started and asyncio._get_running_loop() is None:
            # The hit path: this thread's idle loop runs the driver's coroutine itself, as a user's own
            # run_until_complete(conn.fetchrow(...)) would: no coroutine of ours around it. The lock is only
            # ever contended by close() from another thread. Mirrors aget (kept inline: every call
            # level costs ~0.3 µs on a loop that just woke from epoll).
            own = self._threads.get()
            cs = self._sets.get(own.loop)
            if cs is not None and cs.idle and not self.gate.down_until and own.lock.acquire(blocking=False):
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
                if self.gate.delay:
                    self.gate.ok()
                got = hot_entry(row, view, namespace) if hot else live_entry(row)
                if got is not Ask.SERVER:
                    if got is not None:
                        self._touches.append((namespace, key))
                    return got
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
        if cs is None or not cs.idle or self.gate.down_until or self._fork != FORKS[0] or self._closed:
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
        if self.gate.delay:
            self.gate.ok()
        got = hot_entry(row, view, namespace) if hot else live_entry(row)
        if got is Ask.SERVER:
            return await self._get_slow(namespace, key)  # the view can't tell: the exact statement can
        if got is not None:
            self._touches.append((namespace, key))
        return got

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


#: per-process state left behind at fork (see ``PostgresBackend._after_fork``)
_FORK_GRAVEYARD: list[Any] = []


def from_settings(settings: CacheConfig) -> PostgresBackend:
    """The factory ``infra.cache.core.make_backend`` calls for ``"backend": "postgres"``."""
    return PostgresBackend.from_settings(settings)
