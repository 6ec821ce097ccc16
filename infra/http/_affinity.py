"""Sync client: a request waits for its own origin's connection rather than closing another origin's.

httpcore's pool counts idle keep-alive connections toward ``max_connections`` (which keeps the limit
honest), but when a request's origin has no idle connection and the pool is full it closes *any* idle
connection -- usually another origin's, which that origin then reopens a moment later. With 16 threads
hopping over 4 origins that was 20-28 connections opened for 40 requests. So before a request goes to
httpcore we look at the pool and decide (``decide``, I/O-free):

* an idle connection of its own origin is there, or an HTTP/2 one with room: go (reused);
* others already wait for this origin and one of its connections is busy: queue behind them (FIFO);
* the pool has room for a new connection: go (opened, nothing closed);
* a connection of its own origin is busy: wait for it -- a finishing call hands its connection to the
  first waiter for that origin (``leave``), bounded by the pool timeout / deadline;
* otherwise no connection of this origin will ever be freed for it: go, and httpcore closes an idle
  connection of another origin (the only churn left, and a necessary one).

A wait that runs out goes ahead rather than failing: waiting was only to save a reconnect.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import httpcore

__all__ = ["Affinity", "decide"]

GO = True
WAIT = False

# A waiter re-checks the pool this often: a connection closed by keep-alive expiry or by the server makes
# room without any call finishing (rare; the normal wake-up is a hand-over).
_RECHECK_S = 0.05
_DEFAULT_PORTS = {b"http": 80, b"https": 443, b"ws": 80, b"wss": 443}


def decide(idle_same: int, open_total: int, cap: int, busy_same: int, queued_same: int) -> bool:
    """GO or WAIT for a request whose origin has ``idle_same`` free connections, ``busy_same`` requests in
    flight and ``queued_same`` requests already waiting, in a pool of ``open_total`` of ``cap``."""
    if idle_same > 0:
        return GO
    if busy_same > 0 and queued_same > 0:
        return WAIT
    if open_total < cap:
        return GO
    return WAIT if busy_same > 0 else GO


class _Waiter:
    __slots__ = ("granted", "parked")

    def __init__(self) -> None:
        self.parked = threading.Event()
        self.granted = False


class Affinity:
    """Counts each origin's requests in flight on one httpcore pool and queues those that would evict."""

    __slots__ = ("_busy", "_cap", "_lock", "_pool", "_waiters")

    def __init__(self, pool: Any, cap: int) -> None:
        self._pool = pool
        self._cap = cap
        self._lock = threading.Lock()
        self._busy: dict[Any, int] = collections.defaultdict(int)
        self._waiters: dict[Any, collections.deque[_Waiter]] = collections.defaultdict(collections.deque)

    def _decide(self, origin: Any, key: Any, queued: int) -> bool:
        open_total = 0
        open_same = 0
        for conn in self._pool.connections:
            try:
                if conn.is_closed():
                    continue
                open_total += 1
                if conn.can_handle_request(origin):
                    open_same += 1
                    if conn.is_available() and "HTTP/2" in conn.info():
                        return GO  # multiplexed: one more stream, no new connection
            except Exception:  # a connection changing state under us: count it as open
                open_total += 1
        busy = self._busy.get(key, 0)
        return decide(open_same - busy, open_total, self._cap, busy, queued)

    def enter(self, url: Any, timeout: float | None) -> Any:
        """Wait (at most ``timeout`` s) until this request can go without closing another origin's idle
        connection; returns the key to pass to ``leave`` once its response is closed."""
        # The origin exactly as httpx's transport will hand it to httpcore (default port filled in).
        origin = httpcore.Origin(
            url.raw_scheme, url.raw_host, url.port or _DEFAULT_PORTS.get(url.raw_scheme, 0)
        )
        key = (origin.scheme, origin.host, origin.port)  # Origin itself isn't hashable
        with self._lock:
            queue = self._waiters[key]
            if self._decide(origin, key, len(queue)) is GO:
                self._busy[key] += 1
                return key
            waiter = _Waiter()
            queue.append(waiter)
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _RECHECK_S if end is None else min(_RECHECK_S, end - time.monotonic())
            if left > 0 and waiter.parked.wait(left):
                return key  # handed over: the releaser kept our busy count
            with self._lock:
                if waiter.granted:
                    return key
                if left <= 0 or self._decide(origin, key, queue.index(waiter)) is GO:
                    queue.remove(waiter)
                    self._busy[key] += 1
                    return key

    def leave(self, key: Any) -> None:
        """The request's response is closed (its connection back in the pool, or gone): hand the connection
        to the first request waiting for this origin, if any."""
        with self._lock:
            queue = self._waiters.get(key)
            if queue:
                waiter = queue.popleft()
                waiter.granted = True
                waiter.parked.set()
                return
            busy = self._busy[key] - 1
            if busy:
                self._busy[key] = busy
            else:
                del self._busy[key]
                if queue is not None:
                    del self._waiters[key]
