"""The SQLite store at its byte caps (issue 18): eviction let go of the writers' lock between chunks, and the
maintenance pass that evicts, folds and checkpoints in one stop of the writers."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from infra.cache.backends.base import StoredEntry
from infra.cache.backends.sqlite import files as sqlite_files
from infra.cache.backends.sqlite.maint import EVICT_CHUNK, floor_of, high_water
from infra.cache.backends.sqlite.store import SQLiteBackend

KB = StoredEntry(b"x" * 1000, 1)


class _PausingStore(SQLiteBackend):
    """Stops the thread named ``evictor`` after its first eviction chunk (the writers' lock is free then)
    until the test says go on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chunk_done = threading.Event()
        self.go_on = threading.Event()

    def _between_chunks(self) -> None:
        if threading.current_thread().name == "evictor":
            self.chunk_done.set()
            assert self.go_on.wait(30)


def _fill(path: str, namespace: str, rows: int) -> None:
    """``rows`` entries of 1000 B, written by a store with no caps (so none is evicted on the way)."""
    filler = SQLiteBackend(path, maintenance_interval=0)
    try:
        filler.set_many(namespace, {f"k{i}": KB for i in range(rows)})
    finally:
        filler.close()


def test_a_set_completes_between_two_eviction_chunks(cache_path: str) -> None:
    """An eviction of many rows goes in transactions of EVICT_CHUNK rows, the writers' lock let go between
    them: a set from another thread completes while the eviction is still under way, and the eviction
    then finishes with exact counts (each chunk counted after its COMMIT)."""
    _fill(cache_path, "small", 300)
    b = _PausingStore(cache_path, namespace_max_bytes={"small": 10_000}, maintenance_interval=0)
    try:
        evicted: list[int] = []
        evictor = threading.Thread(target=lambda: evicted.append(b.enforce_caps("small")), name="evictor")
        evictor.start()
        assert b.chunk_done.wait(30)
        assert b.evictions == EVICT_CHUNK  # one chunk done, the eviction is not
        setter = threading.Thread(target=b.set, args=("other", "new", KB))
        setter.start()
        setter.join(30)
        assert not setter.is_alive(), "the set waited for the whole eviction"
        assert b.get("other", "new") is not None
        b.go_on.set()
        evictor.join(30)
        assert not evictor.is_alive()
        by = b.stats().by_namespace
        assert floor_of(10_000) - 1000 < by["small"][1] <= floor_of(10_000)
        assert evicted == [b.evictions] == [300 - by["small"][0]]
        assert by["other"] == (1, 1000)
    finally:
        b.go_on.set()
        b.close()


def test_the_maintenance_pass_evicts_before_the_cap_in_one_stop_of_the_writers(
    cache_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past 1 % under the cap a pass evicts down to 2 % under (no writes of this process since its last
    checkpoint here: see the floor test), so a steady stream of sets is met by the
    checkpoint wakes before it crosses the cap; the pass (access times, purge, fold, eviction, checkpoint)
    takes the writers' file lock once: one stop of the sets, not one per step."""
    _fill(cache_path, "ns", 100)  # 100,000 B
    b = SQLiteBackend(cache_path, max_bytes=100_800, maintenance_interval=0)  # under the cap, past 99 %
    try:
        assert b.get("ns", "k0") is not None  # a touch: flushed by the pass, so k0 is no longer the LRU
        takes: list[int] = []
        real = sqlite_files.lock_within

        def counting(fd: int, budget: float) -> bool:
            takes.append(fd)
            return real(fd, budget)

        monkeypatch.setattr("infra.cache.backends.sqlite.files.lock_within", counting)
        evicted = b.maintain()
        assert len(takes) == 1
        stats = b.stats()
        assert evicted == b.evictions == 100 - stats.entries > 0
        assert stats.bytes <= floor_of(100_800)
        assert b.get("ns", "k0") is not None  # the touched entry survived; untouched older ones went
        takes.clear()
        assert b.maintain() == 0  # at the floor: nothing to evict (still one stop: fold, checkpoint)
        assert len(takes) == 1
    finally:
        b.close()


def test_a_pass_that_cannot_evict_enough_at_once_goes_on_in_chunks(cache_path: str) -> None:
    """A pass evicts at most PASS_EVICT_ROWS in its own transaction; the rest goes in chunks after it, and
    the cap holds at the end with every eviction counted once."""
    _fill(cache_path, "ns", 1500)
    b = SQLiteBackend(cache_path, max_bytes=50_000, maintenance_interval=0)
    try:
        evicted = b.maintain()
        stats = b.stats()
        assert stats.bytes <= floor_of(50_000)
        assert evicted == b.evictions == 1500 - stats.entries
    finally:
        b.close()


def test_a_pass_frees_room_for_the_writes_between_two_checkpoints() -> None:
    """A pass evicts to 2 % under the cap, or further (up to 10 %) when the writes between two checkpoints
    would otherwise cross the cap before the next pass; it starts halfway from that floor to the cap."""
    mb = 1024**2
    assert floor_of(8 * mb) == floor_of(8 * mb, 100_000) == 8 * mb - 8 * mb // 50
    assert floor_of(2 * mb, 144_000) == 2 * mb - 180_000  # 256 sets of ~560 B: 7 % of a 2 MB cap
    assert floor_of(1 * mb, 900_000) == 1 * mb - 1 * mb // 10  # never more than 10 % under
    assert high_water(8 * mb) == 8 * mb - 8 * mb // 100
    assert high_water(2 * mb, 144_000) == 2 * mb - 90_000


def test_a_pass_holds_namespace_caps_and_the_total_in_the_same_stop(cache_path: str) -> None:
    """A pass looks at every capped namespace and at the store's total; a namespace past its cap goes down
    to 2 % under it (every eviction counted once), the others are left alone."""
    _fill(cache_path, "small", 20)
    _fill(cache_path, "big", 30)
    b = SQLiteBackend(
        cache_path, max_bytes=1_000_000, namespace_max_bytes={"small": 10_000}, maintenance_interval=0
    )
    try:
        evicted = b.maintain()
        by = b.stats().by_namespace
        assert floor_of(10_000) - 1000 < by["small"][1] <= floor_of(10_000)
        assert by["big"] == (30, 30_000)
        assert evicted == b.evictions == 20 - by["small"][0]
    finally:
        b.close()
