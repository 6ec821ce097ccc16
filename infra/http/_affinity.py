"""Sync client: a request waits briefly for its own origin's connection rather than closing another's.

httpcore's pool counts idle keep-alive connections toward ``max_connections`` (which keeps the limit
honest), but when a request's origin has no idle connection and the pool is full it closes *any* idle
connection -- usually another origin's, which that origin reopens a moment later. With 16 threads hopping
over 4 origins that was 20-28 connections opened for 40 requests (16 needed). So before a request goes
to httpcore we look at the pool and decide (``decide``, I/O-free):

* an idle connection of its own origin is there, or an HTTP/2 one with room: go (reused);
* others already wait for this origin: queue behind them (FIFO);
* the pool has room for a new connection: go (opened, nothing closed);
* a call of its own origin is in flight on a connection that will come back (not a stream): wait for it
  -- a finishing call hands its connection to the first waiter for that origin (``leave``);
* otherwise none of this origin's connections will be freed for it soon: go, and httpcore closes an
  idle connection of another origin (the only churn left, and a necessary one).

A wait is bounded by ``TURN_WAIT_S`` as well as the pool timeout and deadline, and one that runs out goes
ahead (evicting) rather than failing: waiting only saves a reconnect, so it must not cost more than one.
Streams don't count as "will come back": an LLM or TTS stream may hold its connection for minutes.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

import httpcore

__all__ = ["TURN_WAIT_S", "Affinity", "decide"]

GO = True
WAIT = False

# The longest a request waits for its origin's connection: about one TLS connection set-up to a distant
# host (TCP + TLS 1.3, 2 round trips at ~50 ms), the most that reconnecting instead would have cost. Calls
# that take far longer than this gain nothing worth waiting for from a reused connection.
TURN_WAIT_S = 0.1
_DEFAULT_PORTS = {b"http": 80, b"https": 443, b"ws": 80, b"wss": 443}


def decide(idle_same: int, open_total: int, cap: int, returning_same: int, queued_same: int) -> bool:
    """GO or WAIT for a request whose origin has ``idle_same`` free connections, ``returning_same`` calls
    in flight that will give theirs back and ``queued_same`` requests already waiting, in a pool of
    ``open_total`` connections out of ``cap``."""
    if idle_same > 0:
        return GO
    if returning_same > 0 and queued_same > 0:
        return WAIT
    if open_total < cap:
        return GO
    return WAIT if returning_same > 0 else GO


class _Waiter:
    __slots__ = ("granted", "parked")

    def __init__(self) -> None:
        self.parked = threading.Event()
        self.granted = False


class Affinity:
    """Counts each origin's calls in flight on one httpcore pool and queues those that would evict."""

    __slots__ = ("_busy", "_cap", "_lock", "_pool", "_streams", "_waiters")

    def __init__(self, pool: Any, cap: int) -> None:
        self._pool = pool
        self._cap = cap
        self._lock = threading.Lock()
        self._busy: dict[Any, int] = {}  # calls in flight (streams included), per origin key
        self._streams: dict[Any, int] = {}  # of those, streams handed to the caller
        self._waiters: dict[Any, collections.deque[_Waiter]] = {}

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
        returning = busy - self._streams.get(key, 0)
        return decide(open_same - busy, open_total, self._cap, returning, queued)

    def enter(self, url: Any, timeout: float | None) -> Any:
        """Wait (at most ``timeout`` s and ``TURN_WAIT_S``) until this request for ``url`` (an httpx.URL)
        can go without closing another origin's idle connection; returns the key for ``leave``."""
        # The origin exactly as httpx's transport hands it to httpcore (default port filled in).
        origin = httpcore.Origin(
            url.raw_scheme, url.raw_host, url.port or _DEFAULT_PORTS.get(url.raw_scheme, 0)
        )
        key = (origin.scheme, origin.host, origin.port)  # Origin itself isn't hashable
        with self._lock:
            queue = self._waiters.get(key)
            if self._decide(origin, key, len(queue) if queue else 0) is GO:
                self._busy[key] = self._busy.get(key, 0) + 1
                return key
            if queue is None:
                queue = self._waiters[key] = collections.deque()
            waiter = _Waiter()
            queue.append(waiter)
        wait = TURN_WAIT_S if timeout is None else max(0.0, min(timeout, TURN_WAIT_S))
        waiter.parked.wait(wait)
        with self._lock:
            if not waiter.granted:  # ran out: go ahead (httpcore may close another origin's idle one)
                queue.remove(waiter)
                if not queue and self._waiters.get(key) is queue:
                    del self._waiters[key]
                self._busy[key] = self._busy.get(key, 0) + 1
            # granted: the releaser passed its place in _busy straight to us
        return key

    def streaming(self, key: Any) -> None:
        """This call's response is now a stream the caller reads: its connection may be held a long time."""
        with self._lock:
            self._streams[key] = self._streams.get(key, 0) + 1

    def leave(self, key: Any, streamed: bool) -> None:
        """The call's response is closed (its connection back in the pool, or gone): hand the connection
        to the first request waiting for this origin, if any."""
        with self._lock:
            if streamed:
                left = self._streams[key] - 1
                if left:
                    self._streams[key] = left
                else:
                    del self._streams[key]
            queue = self._waiters.get(key)
            if queue:
                waiter = queue.popleft()
                if not queue:
                    del self._waiters[key]
                waiter.granted = True
                waiter.parked.set()
                return
            busy = self._busy[key] - 1
            if busy:
                self._busy[key] = busy
            else:
                del self._busy[key]
