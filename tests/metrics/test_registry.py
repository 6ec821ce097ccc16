"""Registry semantics: get-or-create, labels, the cardinality guard, exact le buckets, stats, reset."""

from __future__ import annotations

import math

import pytest

import infra.cache.observability  # noqa: F401  (the cache declares its get_stats() section there)
from infra.metrics import DEFAULT_BUCKETS, MetricsRegistry, get_metrics, timed


def test_same_name_returns_the_same_metric_and_conflicts_are_named(registry: MetricsRegistry) -> None:
    c = registry.counter("infra_x_total", "X.", ("a",))
    assert registry.counter("infra_x_total", "other doc", labelnames=("a",)) is c
    with pytest.raises(ValueError, match="already registered as a counter, not a gauge"):
        registry.gauge("infra_x_total")
    with pytest.raises(ValueError, match=r"already registered with labels \('a',\)"):
        registry.counter("infra_x_total", "X.", ("b",))
    registry.histogram("infra_h_seconds", buckets=(0.1, 1.0))
    with pytest.raises(ValueError, match="already registered with buckets"):
        registry.histogram("infra_h_seconds", buckets=(0.2, 1.0))


@pytest.mark.parametrize(
    ("name", "labels", "message"),
    [
        ("bad-name", (), "invalid metric name"),
        ("ok", ("bad-label",), "invalid label name"),
        ("ok", ("__reserved",), "invalid label name"),
        ("ok", ("a", "a"), "duplicate label names"),
        ("ok", "ab", "must be a sequence of names"),
        ("trailing_newline\n", (), "invalid metric name"),
        ("ok", ("a\n",), "invalid label name"),
    ],
)
def test_invalid_names_are_refused_with_a_message_naming_them(
    name: str, labels: tuple[str, ...], message: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        MetricsRegistry().counter(name, "", labels)


def test_le_is_reserved_on_histograms_only(registry: MetricsRegistry) -> None:
    registry.counter("c_total", "", ("le",)).labels("1").inc()
    with pytest.raises(ValueError, match="'le' is reserved"):
        registry.histogram("h_seconds", "", ("le",))


def test_labels_positional_and_keyword_resolve_the_same_child(registry: MetricsRegistry) -> None:
    h = registry.histogram("infra_req_seconds", "", ("origin", "method"))
    assert h.labels("http://127.0.0.1:1", "GET") is h.labels(method="GET", origin="http://127.0.0.1:1")
    assert registry.counter("c_total", "", ("code",)).labels(200) is registry.counter(
        "c_total", "", ("code",)
    ).labels("200")
    with pytest.raises(ValueError, match="expected 2 label value"):
        h.labels("x")
    with pytest.raises(ValueError, match="expected labels"):
        h.labels(origin="x")
    with pytest.raises(ValueError, match="has labels"):
        h.observe(1.0)


def test_label_less_metrics_take_inc_set_observe_directly(registry: MetricsRegistry) -> None:
    c = registry.counter("plain_total")
    c.inc()
    c.inc(2.5)
    assert c.get() == 3.5
    g = registry.gauge("depth")
    g.set(4)
    g.inc()
    g.dec(2)
    assert g.get() == 3.0
    h = registry.histogram("lat_seconds")
    h.observe(0.2)
    assert h.labels().cumulative()[0][-1] == 1


def test_counters_refuse_to_go_down_and_drop_nan_and_inf(registry: MetricsRegistry) -> None:
    c = registry.counter("c_total")
    with pytest.raises(ValueError, match="c_total: counters only go up"):
        c.inc(-1)
    c.inc(math.nan)
    c.inc(math.inf)
    c.inc(2)
    assert c.get() == 2
    bad = registry.get("infra_metrics_invalid_observations_total")
    assert bad is not None and bad.labels("c_total").get() == 2  # type: ignore[attr-defined]


def test_series_limit_routes_new_label_sets_to_one_overflow_series_and_counts_them() -> None:
    reg = MetricsRegistry(max_series_per_metric=3)
    c = reg.counter("infra_req_total", "", ("path", "code"))
    for i in range(3):
        c.labels(f"/p{i}", "200").inc()
    over = c.labels("/p3", "200")
    assert over.label_values == ("__overflow__", "__overflow__")
    assert c.labels("/p4", "500") is over
    over.inc(5)
    assert len(c.children()) == 4  # three real series and the overflow one
    dropped = reg.get("infra_metrics_dropped_series_total")
    assert dropped is not None
    assert dropped.labels("infra_req_total").get() == 2  # type: ignore[attr-defined]
    assert c.labels("/p0", "200").get() == 1  # existing series still resolve to themselves


def test_le_buckets_are_exact_at_and_next_to_every_boundary(registry: MetricsRegistry) -> None:
    """A value equal to a boundary counts in it; the next float above does not (no sketch rounding)."""
    h = registry.histogram("lat_seconds", "", ("op",)).labels("x")
    for b in DEFAULT_BUCKETS:
        h.observe(b)
        h.observe(math.nextafter(b, math.inf))
        h.observe(math.nextafter(b, 0.0))
    le, _ = h.le_counts()
    # Bucket i holds b_i, nextafter(b_i, 0) and nextafter(b_{i-1}, inf); the first only the two below it.
    assert le[0] == 2
    assert le[1:-1] == [3] * (len(DEFAULT_BUCKETS) - 1)
    assert le[-1] == 1  # nextafter(600, inf)


def test_plus_inf_equals_count_and_sum_min_max_are_exact(registry: MetricsRegistry) -> None:
    h = registry.histogram("size_bytes", "", buckets=(10, 100, 1000)).labels()
    values = [0, 1, 10, 11, 99.5, 1000, 5000, 123456]
    for v in values:
        h.observe(v)
    cum, total = h.cumulative()
    assert cum == [3, 5, 6, 8]
    assert total == sum(values)
    sk = h.sketch()
    assert (sk.count, sk.min, sk.max) == (len(values), 0, 123456)


def test_invalid_observations_are_dropped_and_counted(registry: MetricsRegistry) -> None:
    h = registry.histogram("lat_seconds").labels()
    for v in (-1.0, math.nan, math.inf):
        h.observe(v)
    h.observe(0.5)
    assert h.cumulative()[0][-1] == 1
    bad = registry.get("infra_metrics_invalid_observations_total")
    assert bad is not None and bad.labels("lat_seconds").get() == 3  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="real number"):
        h.observe("0.5")  # type: ignore[arg-type]


def test_get_stats_has_the_seed_004_shape(registry: MetricsRegistry) -> None:
    for _ in range(4):
        with timed("stage1_emotion_scoring", registry=registry):
            pass
    with pytest.raises(RuntimeError), timed("stage1_emotion_scoring", registry=registry):
        raise RuntimeError("boom")
    hits = registry.counter("infra_cache_hits_total", "", ("namespace",))
    misses = registry.counter("infra_cache_misses_total", "", ("namespace",))
    hits.labels("emotion_scoring").inc(360)
    misses.labels("emotion_scoring").inc(90)
    stats = registry.get_stats()
    op = stats["stage1_emotion_scoring"]
    assert op["count"] == 5 and op["errors"] == 1
    assert set(op) == {
        "count",
        "errors",
        "sum_ms",
        "min_ms",
        "max_ms",
        "mean_ms",
        "avg_ms",
        "p50_ms",
        "p95_ms",
        "p99_ms",
    }
    assert op["avg_ms"] == op["mean_ms"]
    assert op["min_ms"] <= op["p50_ms"] <= op["p95_ms"] <= op["p99_ms"] <= op["max_ms"]
    # hit_rate is a fraction everywhere (get_cache().get_stats() too); issue 16 made it one unit.
    assert stats["cache"] == {
        "emotion_scoring": {
            "hits": 360,
            "misses": 90,
            "hit_rate": 0.8,
            "errors": 0,
            "compute_seconds_saved": 0.0,
        }
    }
    import json

    json.dumps(stats, allow_nan=False)  # JSON-ready


def test_histogram_stats_by_name_gives_quantiles_per_series(registry: MetricsRegistry) -> None:
    h = registry.histogram("infra_http_request_duration_seconds", "", ("origin",))
    for i in range(1, 101):
        h.labels("http://127.0.0.1:1").observe(i / 100)
    [st] = registry.histogram_stats("infra_http_request_duration_seconds", scale=1000.0)
    assert st["labels"] == {"origin": "http://127.0.0.1:1"}
    assert st["count"] == 100
    # numpy method="higher": 0-based ranks ceil(0.5 * 99) = 50 and ceil(0.99 * 99) = 99
    assert st["p50"] == pytest.approx(510, rel=0.01)
    assert st["p99"] == pytest.approx(1000, rel=0.01)
    assert registry.histogram_stats("nope") == []
    registry.counter("c_total")
    with pytest.raises(ValueError, match="not a histogram"):
        registry.histogram_stats("c_total")


def test_reset_zeroes_everything_in_place_and_bound_children_keep_working(registry: MetricsRegistry) -> None:
    c = registry.counter("c_total", "", ("a",)).labels("x")
    h = registry.histogram("h_seconds").labels()
    c.inc(3)
    h.observe(1.0)
    with timed("op", registry=registry):
        pass
    registry.reset()
    assert c.get() == 0 and h.cumulative()[0][-1] == 0
    assert "op" not in registry.get_stats()
    c.inc()
    h.observe(2.0)
    assert c.get() == 1 and h.cumulative()[0][-1] == 1


def test_from_config_reads_the_series_limit() -> None:
    from infra.config import MetricsConfig

    section = MetricsConfig(max_series_per_metric=7)
    assert MetricsRegistry.from_config(section).max_series_per_metric == 7
    reg = MetricsRegistry()
    assert reg.configure(section) is reg and reg.max_series_per_metric == 7


def test_the_process_wide_registry_is_one_object() -> None:
    assert get_metrics() is get_metrics()


def test_a_series_memory_is_the_same_after_1e4_and_1e5_observations(registry: MetricsRegistry) -> None:
    """Through the real observe path: once every bucket in the range is used, nothing grows."""
    import random
    import sys

    rng = random.Random(11)
    h = registry.histogram("h_seconds").labels()

    def feed(n: int) -> None:
        for _ in range(n):
            h.observe(math.exp(rng.uniform(math.log(1e-3), math.log(1.0))))  # 1 ms .. 1 s

    def footprint() -> tuple[int, int, int]:
        s = h._local.s  # seam: this thread's shard, whose size is the claim
        return len(s.bins) + len(s.split), sys.getsizeof(s.bins), sys.getsizeof(s.split)

    feed(10_000)
    after_1e4 = footprint()
    feed(90_000)
    assert footprint() == after_1e4
    assert h.cumulative()[0][-1] == 100_000
