"""``GenerationView``: the generations a shared backend last heard of, and when it may trust them (no I/O)."""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from infra.cache.backends.postgres.genview import GenerationView


def test_not_live_until_a_snapshot_is_loaded_and_not_after_the_listener_is_lost() -> None:
    v = GenerationView()
    assert not v.live
    v.load({"a": 2}, v.mark())
    assert v.live and v.gens == {"a": 2}
    v.lost()
    assert not v.live
    assert v.gens == {"a": 2}  # kept, but not trusted until the next snapshot


def test_bump_only_moves_forward() -> None:
    v = GenerationView()
    v.bump("a", 3)
    v.bump("a", 2)  # a notification overtaken by a newer invalidation
    assert v.gens["a"] == 3
    v.bump("a", 4)
    assert v.gens["a"] == 4


def test_a_snapshot_replaces_the_view_when_nothing_happened_while_it_was_read() -> None:
    """That is how a generation the server lost (tables dropped and made again) is wound back."""
    v = GenerationView()
    v.load({"a": 5, "b": 1}, v.mark())
    v.load({"a": 0}, v.mark())
    assert v.gens == {"a": 0}


def test_a_snapshot_taken_before_an_update_never_winds_that_update_back() -> None:
    v = GenerationView()
    v.load({"a": 1}, v.mark())
    mark = v.mark()  # the reload's SELECT starts here...
    v.bump("a", 2)  # ...our own invalidation (or a NOTIFY) lands while it runs...
    v.load({"a": 1, "b": 7}, mark)  # ...and its answer predates it
    assert v.gens == {"a": 2, "b": 7}


@settings(deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 50)), max_size=40))
def test_any_interleaving_of_updates_keeps_the_highest_generation(events: list[tuple[str, int]]) -> None:
    v = GenerationView()
    mark = v.mark()
    for ns, g in events:
        v.bump(ns, g)
    v.load({"a": 0, "b": 0, "c": 0}, mark)  # stale snapshot: merged, not installed
    for ns in "abc":
        assert v.gens.get(ns, 0) == max([g for n, g in events if n == ns], default=0)


def test_bumps_from_many_threads_lose_nothing() -> None:
    v = GenerationView()
    barrier = threading.Barrier(4)

    def worker(offset: int) -> None:
        barrier.wait()
        for g in range(offset, 4000, 4):
            v.bump("a", g)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert v.gens["a"] == 3999
