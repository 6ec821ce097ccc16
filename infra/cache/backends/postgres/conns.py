"""The PostgreSQL backend's connections of one event loop, and its statement watchdog's test (asyncpg only).

An asyncpg connection belongs to the loop that opened it, so each loop gets its own small set: a free list
grown up to ``max_size``, waiters served in order. ``asyncpg.Pool`` is not used: it costs ~40 µs of
bookkeeping per call on this kind of machine, as much as the query itself.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from infra.cache.backends.base import import_driver
from infra.errors import CacheError

if TYPE_CHECKING:
    import asyncpg

__all__ = ["ConnPlan", "ConnSet", "asyncpg_module", "is_connection_error", "kill_if_stuck", "started"]


def asyncpg_module() -> Any:
    return import_driver("asyncpg", "postgres")


def is_connection_error(exc: BaseException) -> bool:
    """Errors after which the connection is not trusted again and the server is treated as down."""
    apg = asyncpg_module()
    if isinstance(exc, (OSError, asyncio.TimeoutError, apg.InterfaceError, apg.PostgresConnectionError)):
        return True
    # 57P01 admin_shutdown (pg_terminate_backend), 57P02 crash_shutdown, 57P03 cannot_connect_now
    return isinstance(exc, apg.PostgresError) and str(getattr(exc, "sqlstate", "")).startswith(("57P", "08"))


@dataclasses.dataclass(frozen=True, slots=True)
class ConnPlan:
    """What a ``ConnSet`` needs from its backend, named: how to open a connection and prepare its hit
    statements, what to do once one is open, and how long a caller may wait."""

    #: connect (creating the schema if needed), then prepare the hit statements (exact, hot)
    connect: Callable[[], Awaitable[asyncpg.Connection]]
    prepare: Callable[[asyncpg.Connection], Awaitable[tuple[Any, Any]]]
    #: called once a connection is open (the backend starts its statement watchdog there)
    opened: Callable[[], None]
    #: how long a cached call waits for a connection (the store budget), a connect at most, and how many
    budget: float
    connect_timeout: float
    max_size: int


class ConnSet:
    """Connections of one event loop: a free list, grown up to ``max_size``, waiters served in order."""

    __slots__ = ("closed", "conns", "idle", "loop", "max_size", "pending", "plan", "size", "waiters")

    def __init__(self, plan: ConnPlan, loop: asyncio.AbstractEventLoop) -> None:
        self.plan = plan
        self.loop = loop
        self.max_size = plan.max_size
        self.idle: list[asyncpg.Connection] = []
        # open connections, idle or busy (the watchdog looks here), each with its prepared hit statements
        # (exact, hot): a PreparedStatement skips asyncpg's statement-cache lookup, ~0.8 µs per hit
        self.conns: dict[asyncpg.Connection, tuple[Any, Any]] = {}
        self.size = 0
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.closed = False
        # A connect that outlived a caller's budget: it goes on (on this loop, whenever the loop runs) and
        # the next caller waits for it in turn, so a slow but working server does get connected.
        self.pending: asyncio.Task[Any] | None = None

    async def _open(self) -> asyncpg.Connection:
        plan = self.plan
        conn = await plan.connect()
        try:
            self.conns[conn] = await plan.prepare(conn)
        except BaseException:
            conn.terminate()
            raise
        if self.closed:
            self.conns.pop(conn, None)
            conn.terminate()
            raise CacheError("postgres cache backend is closed")
        plan.opened()  # the statement watchdog runs there
        return conn

    async def acquire(self, wait: float | None = None) -> asyncpg.Connection:
        """An idle connection, a new one, or one released by another task; waits at most ``wait`` seconds
        (default: the store budget) for a connect or a release."""
        budget = self.plan.budget if wait is None else wait
        while True:
            if self.idle:
                return self.idle.pop()
            if self.closed:
                raise CacheError("postgres cache backend is closed")
            task = self.pending
            if task is not None or self.size < self.max_size:
                if task is None:
                    self.size += 1
                    task = self.pending = self.loop.create_task(self._open())
                await asyncio.wait((task,), timeout=budget)  # never cancels the connect
                if not task.done():
                    raise TimeoutError(f"no connection within {budget * 1000:.0f} ms (still connecting)")
                if self.pending is not task:
                    continue  # another waiter on this loop took it (or its failure): look again
                self.pending = None
                try:
                    return task.result()
                except BaseException:
                    self.size -= 1
                    self._wake(None)
                    raise
            fut: asyncio.Future[Any] = self.loop.create_future()
            self.waiters.append(fut)
            try:
                conn = await asyncio.wait_for(fut, budget)
            except BaseException:
                if fut.done() and not fut.cancelled() and fut.result() is not None:
                    self.release(fut.result())
                raise
            if conn is not None:
                return conn

    def _wake(self, conn: asyncpg.Connection | None) -> bool:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return True
        return False

    def release(self, conn: asyncpg.Connection) -> None:
        if self.closed or conn.is_closed():
            self.conns.pop(conn, None)
            self.size -= 1
            self._wake(None)
            if not conn.is_closed():
                conn.terminate()
            return
        if not self._wake(conn):
            self.idle.append(conn)

    def discard(self, conn: asyncpg.Connection) -> None:
        """Drop a connection that failed: never reused."""
        self.conns.pop(conn, None)
        self.size -= 1
        if not conn.is_closed():
            conn.terminate()
        self._wake(None)

    def _drop_pending(self) -> asyncio.Task[Any] | None:
        """Forget the connect in flight; it terminates its connection when it completes (cancelling an
        asyncpg connect midway leaks its socket). Returns the task if it is still running."""
        task, self.pending = self.pending, None
        if task is None:
            return None
        task.add_done_callback(_terminate_result)
        return None if task.done() else task

    async def aclose(self) -> None:
        self.closed = True
        task = self._drop_pending()
        if task is not None:  # let it finish on this loop (bounded by its connect timeout), then it closes
            await asyncio.wait((task,), timeout=self.plan.connect_timeout + 1.0)
            if not task.done():
                task.cancel()
        idle, self.idle = self.idle, []
        for conn in idle:
            self.conns.pop(conn, None)
            self.size -= 1
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except Exception:
                conn.terminate()
        while self._wake(None):
            pass

    def terminate(self) -> None:
        self.closed = True
        self._drop_pending()
        idle, self.idle = self.idle, []
        for conn in idle:
            self.conns.pop(conn, None)
            conn.terminate()

    def busy(self) -> list[tuple[asyncpg.Connection, int]]:
        """Connections running a statement now, each with asyncpg's count of statements it has started.
        (Called from the private loop's thread: the set and list copies are single C calls under the GIL.)"""
        return [(c, started(c)) for c in set(self.conns).difference(self.idle)]


def _terminate_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().terminate()


def started(conn: Any) -> int:
    """How many statements asyncpg has started on ``conn`` (its protocol counts them; a test pins it); -1
    once the connection has been terminated (asyncpg then drops its protocol)."""
    protocol = conn._protocol
    count: int = -1 if protocol is None else protocol.queries_count
    return count


def kill_if_stuck(cs: ConnSet, conn: Any, count: int) -> None:
    """On the connection's own loop: terminate it if it is still running the statement the watchdog saw."""
    if count >= 0 and conn not in cs.idle and not conn.is_closed() and started(conn) == count:
        conn.terminate()
