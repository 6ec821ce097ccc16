"""How ``Cache`` learns of invalidations and changes made elsewhere: pushed by the backend, polled as a
safety net. ``ChangeTracker`` holds that state; ``Cache`` owns one and asks it on each tick.

The hit path only compares the clock with ``Cache._next_gen_check`` (one float, every 0.1 s); everything
else happens on that tick or on the backend's listener:

* **Push** (PostgreSQL LISTEN/NOTIFY, Redis pub/sub): the backend calls ``pushed_generation`` from its
  listener thread or loop. It sets the namespace's generation and drops that namespace's L1 entries at once,
  so another process's ``invalidate`` is honoured within milliseconds, not at the next poll (issue 8).
  Thread-safe: the generation is one attribute store (atomic under the GIL) made *before* L1 is cleared,
  and readers capture the generation *before* their L2 read, so a value read before the invalidation
  is stored in L1 under the old generation and never served again.
* **Poll** (every backend): ``versions()`` (generations and change counts) every ``poll_interval`` (0.1 s)
  while no push listener is connected, every ``push_poll_interval`` (0.5 s with the default
  ``sync_interval`` of 1 s) while one is, and at once when the listener's epoch changes (it reconnected:
  invalidations made while it was away were never pushed). Async paths await ``aversions()``: a network
  backend's sync call would block the event loop for a round trip.
* **Changes** (issue 14): a ``delete``, a ``clear`` or a ``set`` that replaces a live entry, in any process
  or from the CLI, bumps the namespace's change count in the store; a poll that sees the count move drops
  that namespace's L1 entries (the next reads go to the store, which has the change). So every process's L1
  follows such changes within ``sync_interval`` (default 1 s): a poll interval plus at most one tick.
  PostgreSQL and Redis also push the new count (``"c<count>:<namespace>"`` on the invalidation channel),
  which ``pushed_change`` applies within milliseconds.

A poll that was in flight while a push arrived is discarded (its answer may predate the push) and retried
on the next tick, so a poll never winds a generation back over a newer pushed one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from infra.cache.backends.base import GENERATION_POLL_INTERVAL, PUSH_POLL_INTERVAL, CacheBackend
from infra.cache.l1 import L1Cache
from infra.cache.namespaces import Namespace

__all__ = ["ChangeTracker", "poll_intervals"]

log = logging.getLogger("infra.cache")

_NEVER = float("-inf")


def poll_intervals(
    sync_interval: float, poll_interval: float | None, push_poll_interval: float | None
) -> tuple[float, float]:
    """``(poll_interval, push_poll_interval)``: the ones given, else derived from ``sync_interval`` so that
    a tick (0.1 s at most apart while calls come) plus a poll interval stays within it."""
    if poll_interval is None:
        poll_interval = min(GENERATION_POLL_INTERVAL, sync_interval / 2)
    if push_poll_interval is None:
        push_poll_interval = min(PUSH_POLL_INTERVAL, max(poll_interval, sync_interval / 2))
    if not (poll_interval > 0 and push_poll_interval > 0):
        raise ValueError(
            "poll_interval and push_poll_interval must be > 0, "
            f"got {poll_interval!r} and {push_poll_interval!r}"
        )
    return poll_interval, push_poll_interval


class ChangeTracker:
    """The generations and change counts this process has seen, and when to poll the store for more.

    ``namespaces`` and ``l1`` are the cache's own (the tracker moves generations on and drops L1 entries).
    """

    __slots__ = (
        "_l1",
        "_last_poll",
        "_namespaces",
        "_poll_interval",
        "_push_epoch",
        "_push_poll_interval",
        "_push_seq",
    )

    def __init__(
        self,
        namespaces: Mapping[str, Namespace],
        l1: L1Cache,
        *,
        poll_interval: float,
        push_poll_interval: float,
    ) -> None:
        self._namespaces, self._l1 = namespaces, l1
        self._poll_interval, self._push_poll_interval = poll_interval, push_poll_interval
        self._last_poll, self._push_seq = _NEVER, 0
        self._push_epoch: int | None = None

    def subscribe(self, backend: CacheBackend) -> None:
        """Listen to the backend's pushed invalidations, if it has any (fail-open: polling remains)."""
        hook = getattr(type(backend), "on_invalidate", None)
        if hook is None or hook is CacheBackend.on_invalidate:
            return  # no push (SQLite: every process reads the same file; polling it costs microseconds)
        try:
            backend.on_invalidate(self.pushed_generation)
            backend.on_change(self.pushed_change)
        except Exception as exc:
            log.warning("cache backend %r: push invalidation unavailable (%s); polling instead", backend, exc)

    def pushed_generation(self, namespace: str, generation: int) -> None:
        """The backend's listener saw ``namespace`` move to ``generation`` (any process, this one too)."""
        self._push_seq += 1  # only listener threads write it; a poll in flight compares it (module doc)
        ns = self._namespaces.get(namespace)
        if ns is None or ns.gen == generation:
            return  # unused here (its first use reads the generation), or our own invalidation's echo
        ns.gen = generation  # first: a reader that captures the generation after this reads L2 afresh
        self._l1.clear(namespace)

    def pushed_change(self, namespace: str, count: int) -> None:
        """The listener saw ``namespace``'s change count move to ``count`` (a delete, clear or replacing
        set anywhere, this process included): drop that namespace's L1 entries now, not at the next poll."""
        self._push_seq += 1
        ns = self._namespaces.get(namespace)
        if ns is None or ns.changes == count:
            return
        ns.changes = count
        self._l1.clear(namespace)

    def poll_soon(self) -> None:
        """Make the next tick poll, whatever the interval (a namespace's first async use)."""
        self._last_poll = _NEVER

    def due(self, backend: CacheBackend, now: float) -> int | None:
        """Whether a poll is due at ``now``: the push sequence to poll under (for ``apply``), or None."""
        if not self._namespaces:
            return None
        try:
            epoch = backend.push_state()
        except Exception:
            epoch = None
        # ``now >= last + interval``, the form the tick itself uses (``now - last`` can round below it)
        if epoch is None:
            self._push_epoch = None  # so the listener's return, whatever its epoch, triggers a poll
            due = now >= self._last_poll + self._poll_interval
        elif epoch != self._push_epoch:
            self._push_epoch = epoch  # (re)subscribed: pushes made while it was away were lost
            due = True
        else:
            due = now >= self._last_poll + self._push_poll_interval
        if not due:
            return None
        self._last_poll = now
        return self._push_seq

    def poll(self, backend: CacheBackend, seq: int) -> None:
        """Ask the store for its versions (under push sequence ``seq``, from ``due``) and take the answer."""
        try:
            versions = backend.versions()
        except Exception as exc:
            self.failed(exc)
            return
        self.apply(versions, seq)

    async def apoll(self, backend: CacheBackend, seq: int) -> None:
        """``poll`` on an event loop: awaits ``aversions()`` where the backend has it (no blocking call)."""
        try:
            aversions = getattr(backend, "aversions", None)
            versions = await aversions() if aversions is not None else backend.versions()
        except Exception as exc:
            self.failed(exc)
            return
        self.apply(versions, seq)

    def apply(self, versions: Mapping[str, tuple[int, int]], seq: int) -> None:
        """Take a poll's answer (``{namespace: (generation, changes)}``) asked under push sequence ``seq``."""
        if seq != self._push_seq:
            self._last_poll = _NEVER  # a push landed meanwhile: this answer may be older; ask again next tick
            return
        for name, ns in list(self._namespaces.items()):
            g, changes = versions.get(name, (0, 0))
            if g != ns.gen or changes != ns.changes:
                # invalidated, or an entry deleted / replaced / cleared by some process: drop what L1 holds
                ns.gen = g
                ns.changes = changes
                self._l1.clear(name)

    def failed(self, exc: Exception) -> None:
        """A poll failed: counted as a read error (of the first namespace; the poll serves them all)."""
        ns = next(iter(self._namespaces.values()), None)
        if ns is not None:
            ns.stats.error("read", exc)
