"""How ``Cache`` learns of invalidations made elsewhere: pushed by the backend, polled as a safety net.

``Cache`` binds these functions as methods (as it does the async twins). The hit path only compares the
clock with ``Cache._next_gen_check`` (one float, every 0.1 s); everything else happens on that tick or on
the backend's listener:

* **Push** (PostgreSQL LISTEN/NOTIFY, Redis pub/sub): the backend calls ``push_invalidation`` from its
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
  which ``push_change`` applies within milliseconds.
* **Metrics export** rides the same 0.1 s tick: hits only bump in-memory counters.

A poll that was in flight while a push arrived is discarded (its answer may predate the push) and retried
on the next tick, so a poll never winds a generation back over a newer pushed one.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.cache.core import Cache

__all__ = ["acheck_generations", "check_generations", "push_change", "push_invalidation", "register_push"]

log = logging.getLogger("infra.cache")

_NEVER = float("-inf")


def register_push(self: Cache) -> None:
    """Subscribe to the backend's push invalidations, if it has any (fail-open: polling remains)."""
    b = self.backend
    if b is None:
        return
    from infra.cache.backends.base import CacheBackend

    hook = getattr(type(b), "on_invalidate", None)
    if hook is None or hook is CacheBackend.on_invalidate:
        return  # no push (SQLite: every process reads the same file; polling it costs microseconds)
    ref = weakref.ref(self)  # the backend must not keep a dropped Cache alive

    def on_push(namespace: str, generation: int) -> None:
        c = ref()
        if c is not None:
            c._push_invalidation(namespace, generation)

    def on_change(namespace: str, count: int) -> None:
        c = ref()
        if c is not None:
            c._push_change(namespace, count)

    try:
        b.on_invalidate(on_push)
        b.on_change(on_change)
    except Exception as exc:
        log.warning("cache backend %r: push invalidation unavailable (%s); polling instead", b, exc)


def push_invalidation(self: Cache, namespace: str, generation: int) -> None:
    """The backend's listener saw ``namespace`` move to ``generation`` (any process, this one included)."""
    self._push_seq += 1  # only listener threads write it; a poll in flight compares it (see module doc)
    ns = self._ns.get(namespace)
    if ns is None or ns.gen == generation:
        return  # unused here (its first use reads the generation), or our own invalidation's echo
    ns.gen = generation  # first: a reader that captures the generation after this reads L2 afresh
    self._l1.clear(namespace)


def push_change(self: Cache, namespace: str, count: int) -> None:
    """The listener saw ``namespace``'s change count move to ``count`` (a delete, clear or replacing set
    anywhere, this process included): drop that namespace's L1 entries now rather than at the next poll."""
    self._push_seq += 1
    ns = self._ns.get(namespace)
    if ns is None or ns.changes == count:
        return
    ns.changes = count
    self._l1.clear(namespace)


def _tick(self: Cache, now: float) -> int | None:
    """Metrics export, then whether a generation poll is due: the push sequence to poll under, or None."""
    self._next_gen_check = now + self._tick_interval
    if self._export:
        for ns in list(self._ns.values()):
            ns.stats.flush()
        self._export_evictions()
    else:
        for ns in list(self._ns.values()):
            ns.stats.fold()  # keeps the pending hits to a tick's worth (see infra.cache.stats)
    b = self.backend
    if b is None or not self._ns:
        return None
    try:
        epoch = b.push_state()
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


def _apply(self: Cache, versions: dict[str, tuple[int, int]], seq: int) -> None:
    if seq != self._push_seq:
        self._last_poll = _NEVER  # a push landed meanwhile: this answer may be older; ask again next tick
        return
    for name, ns in list(self._ns.items()):
        g, changes = versions.get(name, (0, 0))
        if g != ns.gen or changes != ns.changes:
            # invalidated, or an entry deleted / replaced / cleared by some process: drop what L1 holds
            ns.gen = g
            ns.changes = changes
            self._l1.clear(name)


def _failed(self: Cache, exc: Exception) -> None:
    ns = next(iter(self._ns.values()), None)
    if ns is not None:
        ns.stats.error("read", exc)


def check_generations(self: Cache, now: float) -> None:
    """The sync tick: export metrics; poll ``generations()`` when due."""
    seq = _tick(self, now)
    if seq is None:
        return
    b = self.backend
    assert b is not None
    try:
        versions = b.versions()
    except Exception as exc:
        _failed(self, exc)
        return
    _apply(self, versions, seq)


async def acheck_generations(self: Cache, now: float) -> None:
    """The async tick: as ``check_generations``, awaiting ``agenerations()`` (no blocking round trip)."""
    seq = _tick(self, now)
    if seq is None:
        return
    b: Any = self.backend
    try:
        aversions = getattr(b, "aversions", None)
        versions = await aversions() if aversions is not None else b.versions()
    except Exception as exc:
        _failed(self, exc)
        return
    _apply(self, versions, seq)
