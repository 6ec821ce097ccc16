"""The L1 probe: ``L1Cache.probe`` is the rule; the written-out copies in ``Cache.get`` and
``Cache.l1_hit`` (the hottest paths, see infra.cache.l1) must give the same answer and count the same hit."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.cache import MISSING, Cache, CacheConfig
from infra.cache import core as cache_core
from infra.cache.l1 import L1Cache, L1Entry

NOW = 1_000_000.0
NS = "n"


@pytest.fixture(scope="module")
def mem_cache() -> Iterator[Cache]:
    c = Cache(CacheConfig(backend="memory"), export_metrics=False)
    yield c
    c.close()


entries = st.builds(
    L1Entry,
    stored=st.one_of(st.text(max_size=5), st.lists(st.integers(), max_size=3)),
    expires=st.one_of(st.none(), st.floats(NOW - 2, NOW + 2)),
    gen=st.integers(0, 2),
    cost=st.floats(0, 10),
    size=st.integers(0, 100),
    thaw=st.sampled_from([None, copy.deepcopy]),
)


def _hits(c: Cache) -> int:
    return int(c.namespace_stats(NS)["hits"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entry=entries, bumps=st.integers(0, 2), now=st.floats(NOW - 3, NOW + 3))
def test_the_written_out_probes_agree_with_the_reference(
    mem_cache: Cache, entry: L1Entry, bumps: int, now: float
) -> None:
    c = mem_cache
    c.get(NS, "warm")  # the namespace exists; its tick ran
    with pytest.MonkeyPatch.context() as m:
        m.setattr(cache_core, "_time", lambda: now)
        c.get(NS, "tick")  # a tick at ``now`` (so neither path below polls)
        for _ in range(bumps):
            c.invalidate(NS)
        gen = c.namespace_generation(NS)
        ref = L1Cache(max_items=10, max_bytes=1000)
        ref.set((NS, "k"), entry)
        counted: list[float] = []
        want = ref.probe((NS, "k"), gen, now, counted.append)
        for path in ("get", "l1_hit"):
            c.l1.set((NS, "k"), entry)
            before = _hits(c)
            got: Any = c.get(NS, "k") if path == "get" else c.l1_hit(NS, "k")
            assert got == want, path
            assert (got is MISSING) == (want is MISSING), path
            assert _hits(c) - before == len(counted), path
            if entry.thaw is not None and want is not MISSING and isinstance(entry.stored, list):
                assert got is not entry.stored  # a copy of its own (deepcopy keeps an immutable str as is)


def test_probe_refreshes_the_lru_order() -> None:
    l1 = L1Cache(max_items=2, max_bytes=1000)
    l1.set((NS, "a"), L1Entry("A", None, 0, 0.0, 1, None))
    l1.set((NS, "b"), L1Entry("B", None, 0, 0.0, 1, None))
    assert l1.probe((NS, "a"), 0, NOW, None) == "A"
    l1.set((NS, "c"), L1Entry("C", None, 0, 0.0, 1, None))  # evicts the least recently used: b
    assert (NS, "a") in l1 and (NS, "b") not in l1 and l1.evictions == 1
