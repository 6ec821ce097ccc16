"""The sorted per-slot sum a scrape uses for busy series (issue 18) counts exactly what a plain count of the
observed values gives, for any values and bucket layouts, including a 0 boundary and duplicate keys."""

from __future__ import annotations

import math
import threading
from itertools import accumulate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.metrics import DEFAULT_BUCKETS, MetricsRegistry
from infra.metrics.exposition import render_text

_values = st.lists(
    st.one_of(
        st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
        st.floats(min_value=1e-9, max_value=1e-3),
        st.sampled_from([0.0, *DEFAULT_BUCKETS]),  # exactly on an `le` boundary
        st.sampled_from(DEFAULT_BUCKETS).map(lambda b: math.nextafter(b, 0.0)),
        st.sampled_from(DEFAULT_BUCKETS).map(lambda b: math.nextafter(b, math.inf)),
    ),
    min_size=0,
    max_size=600,
)
_buckets = st.one_of(
    st.just(DEFAULT_BUCKETS),
    st.lists(
        st.floats(min_value=0.0, max_value=1e5, allow_nan=False), min_size=1, max_size=20, unique=True
    ).map(lambda bs: tuple(sorted(bs))),
    st.just((0.0, 1.0, 1.000001, 1.000002, 2.0)),  # several bounds inside one sketch key
)


@settings(max_examples=300, deadline=None)
@given(_values, _buckets)
def test_le_counts_equal_a_plain_count_of_the_values(values: list[float], buckets: tuple[float, ...]) -> None:
    """Seam: the child's shard set (``_set``), to run the plain reference twin on the same shards."""
    reg = MetricsRegistry()
    h = reg.histogram("busy_seconds", buckets=buckets)
    child = h.labels()
    for v in values:
        child.observe(v)
    cum, total = child.cumulative()
    expected = [sum(1 for v in values if v <= b) for b in (*h.buckets, math.inf)]
    assert cum == expected
    reference, _ = h.layout.le_counts_reference(child._set.read(list))
    assert cum == list(accumulate(reference))
    assert total == pytest.approx(sum(values), rel=1e-9, abs=1e-12)


def test_busy_series_from_two_threads_render_every_observation() -> None:
    """Two threads' shards, each with hundreds of sketch keys (the sorted path), render their exact sum."""
    reg = MetricsRegistry()
    child = reg.histogram("busy_seconds").labels()
    start = threading.Barrier(2)

    def work(seed: int) -> None:
        start.wait()
        for i in range(5000):
            child.observe(1e-4 * 1.013 ** ((i * 7 + seed) % 900))

    threads = [threading.Thread(target=work, args=(s,)) for s in (0, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text = render_text(reg)
    assert "busy_seconds_count 10000\n" in text
    assert 'busy_seconds_bucket{le="+Inf"} 10000\n' in text
