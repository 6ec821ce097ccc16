"""The namespace generations of a shared store as this process last heard them (no I/O here).

A shared backend with push notifications keeps a ``GenerationView`` fed by its listener: a snapshot of the
generations table loaded *after* subscribing, then every notification and every invalidation this process
makes. While the listener is connected and the view is loaded (``live``), a read can fetch a row with its
generation and compare it here, instead of asking the server for the namespace's generation in the same
statement. That is the same guarantee ``Cache`` gives its L1 (an invalidation made elsewhere is honoured
once its notification arrives, milliseconds later; one made here at once), at a lower price.

Why it stays right:

* Generations only grow, so a notification or an invalidation is applied with ``max``; the order in which
  the listener's thread and a caller's thread deliver them does not matter.
* A snapshot replaces the view only when nothing was applied since it was taken (``mark`` / ``load``);
  otherwise it is merged with ``max``. So a reload never winds back an invalidation it did not see, and it
  does wind back a generation the server lost (tables dropped and made again) when it is the only news.
* ``live`` drops the moment the listener is lost, and comes back only with the next snapshot: the backend
  answers with the exact statement meanwhile, because notifications sent while nobody listened are gone.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

__all__ = ["GenerationView"]


class GenerationView:
    """``gens`` (namespace -> generation; absent is 0) and whether it can be trusted now (``live``).

    Readers use ``gens.get(ns, 0)`` without a lock (one dict read, atomic under the GIL); writers serialize
    on a lock so ``max`` updates from different threads can't lose one another.
    """

    __slots__ = ("_lock", "_seq", "gens", "live")

    def __init__(self) -> None:
        self.gens: dict[str, int] = {}
        self.live = False
        self._seq = 0  # bumped by every update: a snapshot taken before one must not replace the view
        self._lock = threading.Lock()

    def bump(self, namespace: str, generation: int) -> None:
        """A notification arrived, or this process invalidated ``namespace``."""
        with self._lock:
            self._seq += 1
            if generation > self.gens.get(namespace, 0):
                self.gens[namespace] = generation

    def mark(self) -> int:
        """Call just before reading a snapshot; pass the result to ``load``."""
        return self._seq

    def load(self, snapshot: Mapping[str, int], mark: int) -> None:
        """Install a snapshot of the generations table and trust the view from now on."""
        with self._lock:
            if self._seq == mark:
                self.gens = dict(snapshot)
            else:  # updates landed while it was read: they may be newer than the snapshot
                for ns, g in snapshot.items():
                    if g > self.gens.get(ns, 0):
                        self.gens[ns] = g
            self.live = True

    def lost(self) -> None:
        """The listener is gone: notifications may be missed until the next snapshot."""
        self.live = False
