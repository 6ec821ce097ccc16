"""Connection slots: at most ``max_per_host`` calls in flight per origin and ``max_connections`` in all.

We hold our own limiters in front of the backend's pool (whose limits are set the same, as a backstop)
for three reasons: the limits then mean the same thing for aiohttp, httpx/h2 and the sync client (httpx
has no per-host limit); the pool wait can be measured without a tracing hook on every request; and the
wait is bounded by the call's deadline like every other phase. A lease is released exactly once, without
awaiting, so cleanup survives cancellation (even a second cancel during cleanup).

Stay on the origin (``pass_on``): a call that ends hands *both* its slots straight to the next caller
queued for the same origin, which then reuses the keep-alive connection just freed. Handing the global
slot to whoever waits longest instead (plain FIFO) made a caller for another origin open a new
connection, and the pool close an idle one to stay within the limit, on nearly every request once
several origins were busy: 1,209 connections for 2,000 requests over 4 origins. So that callers queued
for the global slot are not starved, a gate lets its head be passed over at most ``size`` times in a row.
The caller handed both slots is handed the global gate itself, and gives its slot back there: an origin's
callers need not all hold the same global gate (``resize``: an HTTP/2 origin moves to an unbounded one).
"""

from __future__ import annotations

import asyncio
import collections
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from infra.http._metrics import NullMetrics

if TYPE_CHECKING:
    from infra.config.sections.http import HttpConfig

__all__ = [
    "HTTPX_MAX_STREAMS",
    "UNBOUNDED",
    "AsyncGate",
    "AsyncLease",
    "SyncGate",
    "SyncLease",
    "acquire_sync",
    "host_gates",
    "may_bypass",
    "pass_on",
    "pass_on_async",
    "release_slots",
    "resize",
    "take_now",
    "wait_slots",
]

#: The size of an HTTP/2 origin's own stand-in for the global gate (``host_gates``): never runs out.
UNBOUNDED = sys.maxsize

_G = TypeVar("_G", "AsyncGate", "SyncGate")


#: The most streams at once to one origin over httpx + h2 (the pure-Python carrier), whatever
#: ``http2_max_streams`` allows: there throughput is flat from 6 to 100 streams (CPU-bound in h2, ~900 req/s
#: against nginx at c=50 for 6, 16, 32 and 100), while a server rotating its connection fails every stream
#: in flight on it (httpcore fails even streams already answered): at 100 in flight, 93 of 1,000 GETs
#: failed all four tries against a server rotating every 100 streams; at 6 to 32, none.
HTTPX_MAX_STREAMS = 16


def host_gates(
    settings: HttpConfig, origin: str, gate: Callable[[int], _G], shared: _G, *, carrier: str
) -> tuple[_G, _G, int]:
    """The two gates a new origin's calls take a slot of: (its own, the shared one).

    HTTP/1.1 carries one call per connection, so a call holds a connection: ``max_per_host`` of the
    origin's and one of the client's ``max_connections``. An HTTP/2 origin multiplexes its calls as
    streams over one connection, which is what those limits count (as aiohttp's and httpx's pools count
    connections, not requests, and as browsers keep 6 connections per HTTP/1.1 host but one per HTTP/2
    host): its calls take a slot of its own ``http2_max_streams`` gate and none of the global one (each
    gets an unbounded gate of its own in that place), so 100 calls to it run at once instead of 6. That is
    for ``carrier`` "pyreqwest"; "httpx" (async httpx + h2) holds at most ``HTTPX_MAX_STREAMS``; and
    "httpx-sync" (PerfClient) keeps HTTP/1.1's limits: httpcore's sync HTTP/2 shared by 16 threads failed
    2 runs in 6 of a rotation test (``deque mutated during iteration``, a KeyError, h2's
    LocalProtocolError on SEND_HEADERS), where 6 at once, as before, never did. (6 failed too, 2 runs in
    20 on a loaded box: the cause was h2 state shared by threads unlocked, which ``_sync_h2`` now locks;
    16 at once then passed 20 rounds of the rotation scenario at 50 us thread switches. Limit unchanged.)

    The third value: the streams to open the gate to once the origin answers over HTTP/2, 0 when the
    gates are final. Over TLS, HTTP/2 is only offered (ALPN): a server that declines answers over
    HTTP/1.1, and then each call in flight is a connection of its own (the carrier opens one per call,
    up to pyreqwest's 100 or httpx's 16). So such an origin starts with HTTP/1.1's gates, and
    ``_alpn.Alpn`` opens them to that many streams when a response says HTTP/2 (cleartext HTTP/2 is
    prior knowledge, HTTP/2 or nothing: its gates are final at once).
    """
    from infra.http._routing import uses_http2  # here: _routing -> _body -> ... -> _lease at import time

    if carrier == "httpx-sync" or not uses_http2(settings, origin):
        return gate(settings.max_per_host), shared, 0
    streams = settings.http2_max_streams
    if carrier == "httpx":
        streams = min(streams, HTTPX_MAX_STREAMS)
    if origin.startswith("https:"):
        return gate(settings.max_per_host), shared, streams
    return gate(streams), gate(UNBOUNDED), 0


def resize(gate: AsyncGate, size: int, shared: AsyncGate | None = None) -> None:
    """Give ``gate`` ``size`` slots from now on. New ones go straight to its queued callers, with a slot
    of ``shared`` each when given (so they need not queue for the gate they had meant to take one of:
    see ``pass_on``); slots taken away are a debt the next releases pay before any slot is handed on
    (``free`` below 0), so the calls in flight finish and no new one starts until fewer than ``size``
    are."""
    grow, gate.size = size - gate.size, size
    if grow < 0:
        gate.free += grow
    for _ in range(grow):
        if shared is not None and gate.free >= 0 and shared.free > 0 and gate.hand_over(shared):
            shared.free -= 1
        else:
            gate.release()


# What a queued caller is handed: its own gate's slot only (ONE), or the global slot with it: then the
# global gate that slot is of (``pass_on``), where the caller gives it back.
ONE = False


class AsyncGate:
    """A FIFO counting limiter for one event loop, cheaper than ``asyncio.Semaphore`` on the hot path.

    Taking a free slot is two attribute operations and no coroutine (``asyncio.Semaphore.acquire`` is a
    coroutine, and ``locked()`` scans its waiters); a release with callers queued hands the slot straight
    to the first live one, so a newcomer can never overtake them. Invariant: ``free > 0`` only while no
    live caller waits, so ``free`` alone says whether a slot can be taken at once (and ``free`` below 0 is
    a debt, see ``resize``). A waiter's future resolves to ONE or a global gate (see ``pass_on``).
    """

    __slots__ = ("bypassed", "free", "size", "waiters")

    def __init__(self, slots: int) -> None:
        self.free = slots
        self.size = slots
        self.bypassed = 0
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()

    def locked(self) -> bool:
        return self.free <= 0

    def hand_over(self, what: Any) -> bool:
        """Give a slot (and, with a global gate, a slot of it) to the first live waiter; False if none
        waits."""
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():  # skip callers that gave up (cancelled)
                fut.set_result(what)
                return True
        return False

    def release(self) -> None:
        if self.free >= 0 and self.hand_over(ONE):  # below 0: a debt (resize), paid first
            self.bypassed = 0
        else:
            self.free += 1

    def has_waiters(self) -> bool:
        waiters = self.waiters
        while waiters and waiters[0].done():
            waiters.popleft()
        return bool(waiters)

    def may_bypass(self) -> bool:
        """Whether one of this gate's slots may go to a caller of another queue (see ``pass_on``)."""
        return may_bypass(self, self.has_waiters())

    async def wait(self) -> None:
        """Queue for a slot (call only when ``free`` is 0). A slot handed over to a caller cancelled before
        it could run passes on to the next one, so none leaks."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()
            raise


class SyncGate:
    """Thread twin of AsyncGate: FIFO, and a release hands the slot straight to the first waiter."""

    __slots__ = ("_lock", "bypassed", "free", "size", "waiters")

    def __init__(self, slots: int) -> None:
        self.free = slots
        self.size = slots
        self.bypassed = 0
        self.waiters: collections.deque[_Waiter] = collections.deque()
        self._lock = threading.Lock()

    def take_now(self) -> bool:
        """A free slot without waiting, if there is one."""
        with self._lock:
            if self.free > 0:
                self.free -= 1
                return True
            return False

    def take(self, timeout: float | None) -> Any:
        """A slot: ONE, or the global gate when handed a slot of it too; None when none came within
        ``timeout``."""
        with self._lock:
            if self.free > 0:
                self.free -= 1
                return ONE
            waiter = _Waiter()
            self.waiters.append(waiter)
        waiter.parked.acquire(timeout=-1 if timeout is None else max(0.0, timeout))
        with self._lock:
            if waiter.handed is not None:
                return waiter.handed
            waiter.gone = True  # timed out: a release now skips it
            return None

    def hand_over(self, what: Any) -> bool:
        with self._lock:
            return self._hand_over(what)

    def _hand_over(self, what: Any) -> bool:
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.gone:
                waiter.handed = what
                waiter.parked.release()
                return True
        return False

    def release(self) -> None:
        with self._lock:
            if self._hand_over(ONE):
                self.bypassed = 0
            else:
                self.free += 1

    def has_waiters(self) -> bool:
        with self._lock:
            return self._live()

    def _live(self) -> bool:
        waiters = self.waiters
        while waiters and waiters[0].gone:
            waiters.popleft()
        return bool(waiters)

    def may_bypass(self) -> bool:
        with self._lock:
            return may_bypass(self, self._live())


class _Waiter:
    __slots__ = ("gone", "handed", "parked")

    def __init__(self) -> None:
        self.parked = threading.Lock()
        self.parked.acquire()  # released by whoever hands this waiter a slot
        self.handed: Any = None  # ONE, or the global gate whose slot came with it
        self.gone = False


def may_bypass(gate: AsyncGate | SyncGate, waiting: bool) -> bool:
    """Whether ``gate``'s next slot may pass its queue over (``waiting``: a live caller queues): yes while
    none waits, else at most ``size`` times in a row (a release to its own queue resets the count)."""
    if not waiting:
        return True
    if gate.bypassed < gate.size:
        gate.bypassed += 1
        return True
    return False


def pass_on(host_gate: Any, global_gate: Any) -> None:
    """Give back one host and one global slot: both to the next caller for this origin when one waits (it
    reuses the connection just freed) and the global gate's head hasn't been passed over too often;
    otherwise each to its own gate's next caller. No await: runs even while a task is being cancelled.
    Not while the host gate is in debt (``resize``): the debt is paid first."""
    if (
        host_gate.free >= 0
        and host_gate.has_waiters()
        and global_gate.may_bypass()
        and host_gate.hand_over(global_gate)
    ):
        return
    global_gate.release()
    host_gate.release()


def pass_on_async(host_gate: AsyncGate, global_gate: AsyncGate) -> None:
    """``pass_on`` for the loop's own gates, written out (``has_waiters`` and ``hand_over``, no lock to
    take): the release of a call with others queued for its origin, at c=50 nearly every call's."""
    waiters = host_gate.waiters
    while waiters and host_gate.free >= 0:  # below 0: a debt (resize), paid first
        fut = waiters[0]
        if fut.done():  # a caller that gave up (cancelled)
            waiters.popleft()
            continue
        if global_gate.waiters and not global_gate.may_bypass():
            break  # the global queue's head was passed over too often: each slot to its own queue
        waiters.popleft()
        fut.set_result(global_gate)
        return
    global_gate.release()
    host_gate.release()


class _Lease:
    """One host and one global slot, already taken and counted (by the caller or ``wait_slots``), given
    back exactly once by ``release``."""

    __slots__ = ("_global", "_host", "_metrics", "_stats", "released")

    def __init__(self, host_gate: Any, global_gate: Any, metrics: NullMetrics, stats: Any) -> None:
        self._host = host_gate
        self._global = global_gate
        self._metrics = metrics
        self._stats = stats
        self.released = False


class AsyncLease(_Lease):
    __slots__ = ()

    def release(self) -> None:
        if not self.released:
            self.released = True
            release_slots(self._host, self._global, self._metrics, self._stats)


def release_slots(host_gate: AsyncGate, global_gate: AsyncGate, metrics: NullMetrics, stats: Any) -> None:
    """Give back one host and one global slot (no await: runs even while a task is being cancelled)."""
    stats.in_use -= 1
    metrics.in_use -= 1  # the active-connections gauge reads it (HostMetrics)
    if host_gate.waiters or global_gate.waiters:
        pass_on_async(host_gate, global_gate)
    else:
        global_gate.free += 1
        host_gate.free += 1


def take_now(host_gate: AsyncGate, global_gate: AsyncGate, metrics: NullMetrics, stats: Any) -> bool:
    """Take a host and a global slot without awaiting when both are free (the fast path); False: queue
    with ``wait_slots``."""
    if host_gate.free > 0 and global_gate.free > 0:
        host_gate.free -= 1
        global_gate.free -= 1
        stats.in_use += 1
        metrics.in_use += 1
        return True
    return False


async def wait_slots(
    host_gate: AsyncGate, global_gate: AsyncGate, metrics: NullMetrics, stats: Any, loop: Any = None
) -> AsyncGate:
    """Take a per-host then a global slot (always in that order, so waiters can't deadlock), queueing
    for whichever is busy; the global gate it holds a slot of (``global_gate``, or the one handed over
    with the host slot: see ``pass_on``). The caller's fast path takes both at once when both are free.
    (AsyncGate.wait inlined: one coroutine per queued call instead of two.) ``loop``: the running loop,
    if the caller has it at hand."""
    start = time.monotonic()
    both: Any = ONE
    if host_gate.free > 0:
        host_gate.free -= 1
    else:
        fut: asyncio.Future[Any] = (loop or asyncio.get_running_loop()).create_future()
        host_gate.waiters.append(fut)
        try:
            both = await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                # handed over, then cancelled before it could run: pass it on
                if fut.result():
                    pass_on(host_gate, fut.result())
                else:
                    host_gate.release()
            raise
    if both:
        global_gate = both
    else:
        try:
            if global_gate.free > 0:
                global_gate.free -= 1
            else:
                await global_gate.wait()
        except BaseException:
            host_gate.release()
            raise
    stats.in_use += 1
    metrics.in_use += 1
    metrics.pool_wait(time.monotonic() - start)
    return global_gate


class SyncLease(_Lease):
    """Counted here (under the stats' lock), unlike the async lease, whose taker counts it on the loop."""

    __slots__ = ("_lock",)

    def __init__(self, host_gate: SyncGate, global_gate: SyncGate, metrics: NullMetrics, stats: Any) -> None:
        super().__init__(host_gate, global_gate, metrics, stats)
        self._lock = stats.lock
        with self._lock:  # the stats' lock: the threads of one client count under it
            stats.in_use += 1
            metrics.in_use += 1

    def release(self) -> None:
        with self._lock:
            if self.released:
                return
            self.released = True
            self._stats.in_use -= 1
            self._metrics.in_use -= 1
        pass_on(self._host, self._global)


def acquire_sync(
    host_gate: SyncGate,
    global_gate: SyncGate,
    metrics: NullMetrics,
    stats: Any,
    timeout: float | None,
) -> SyncLease | None:
    """Blocking twin of wait_slots; None when no slot freed up within ``timeout`` seconds."""
    got: Any = ONE
    if host_gate.take_now():
        if global_gate.take_now():
            return SyncLease(host_gate, global_gate, metrics, stats)
        start = time.monotonic()
    else:
        start = time.monotonic()
        got = host_gate.take(timeout)
        if got is None:
            return None
    if got is ONE:  # else handed a slot of the global gate too (one sync client has one global gate)
        left = None if timeout is None else max(0.0, start + timeout - time.monotonic())
        if global_gate.take(left) is None:
            host_gate.release()
            return None
    metrics.pool_wait(time.monotonic() - start)
    return SyncLease(host_gate, global_gate, metrics, stats)
