"""The PostgreSQL backend's life on its private loop: the LISTEN connection that keeps the generation view
and calls the push callbacks, the statement watchdog, periodic maintenance, and closing it all.
``PgBackground`` is a base of ``PostgresBackend``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from infra.cache.backends.base import FORKS, deliver_push
from infra.cache.backends.gate import ReconnectGate
from infra.cache.backends.postgres.conns import ConnSet, kill_if_stuck
from infra.cache.backends.postgres.genview import GenerationView
from infra.cache.backends.postgres.loops import LoopThread, ThreadLoops
from infra.cache.backends.postgres.queries import PgQueries
from infra.errors import CacheError

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PgBackground"]

log = logging.getLogger("infra.cache")
T = TypeVar("T")


class PgBackground(PgQueries):
    """LISTEN, watchdog, maintenance and ``close`` of ``PostgresBackend`` (which sets the state below)."""

    gate: ReconnectGate
    _closed: bool
    _fork: int
    _bg_started: bool
    _bg_stop: asyncio.Event
    _bg_tasks: list[asyncio.Task[Any]]
    _state_lock: threading.Lock
    _private: LoopThread
    _threads: ThreadLoops
    _sets: dict[asyncio.AbstractEventLoop, ConnSet]
    _budget: float
    _op_timeout: float
    _connect_timeout: float
    _interval: float
    _listen_wanted: bool
    _listen_epoch: int
    _wake: asyncio.Event | None
    _stuck: dict[tuple[Any, int], float]
    _long: set[Any]
    _callbacks: list[Callable[[str, int], None]]
    _change_callbacks: list[Callable[[str, int], None]]

    if TYPE_CHECKING:

        async def _connect(self) -> asyncpg.Connection: ...

        async def _run(self, fn: Callable[..., Awaitable[T]], *args: Any, long: bool = False) -> T: ...

        def _after_fork(self, *, listen: bool = True) -> None: ...

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
        view.load({r["namespace"]: int(r["generation"]) for r in rows}, mark)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        deliver_push(payload, self._callbacks, self._change_callbacks, self._view.bump)

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
