"""Issue 16: what a user reads equals what happened, counted by the test itself.

Each test uses a namespace of its own in the process-wide registry (the one the cache reports into),
so counts from other tests never mix in.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from infra.cache import MISSING, Cache, CacheConfig
from infra.metrics import MetricsRegistry, QuantileSketch, get_metrics, timed
from infra.metrics.exposition import json_document, render_openmetrics, render_text


def _ns() -> str:
    return "t" + uuid.uuid4().hex[:10]


def _sample(text: str, line_start: str) -> float:
    [line] = [ln for ln in text.splitlines() if ln.startswith(line_start)]
    return float(line.rsplit(" ", 1)[1])


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Cache]:
    c = Cache(CacheConfig(path=str(tmp_path / "c.db")))
    yield c
    c.close()


def test_every_view_is_current_without_another_cache_call_or_get_stats(cache: Cache) -> None:
    """7 hits / 3 misses show as 7 / 3 in get_stats and all three /metrics formats at once, with no
    further cache call; the store gauges are there without anyone calling get_cache().get_stats()."""
    ns = _ns()
    for i in range(3):
        assert cache.get(ns, f"k{i}") is MISSING
        cache.set(ns, f"k{i}", i, cost=0.5)
    hits = sum(cache.get(ns, f"k{i % 3}") is not MISSING for i in range(7))
    assert hits == 7
    stats = get_metrics().get_stats()["cache"][ns]
    assert (stats["hits"], stats["misses"]) == (7, 3)
    assert stats["hit_rate"] == 0.7
    assert stats["compute_seconds_saved"] == pytest.approx(3.5)
    text = render_text()
    assert _sample(text, f'infra_cache_hits_total{{namespace="{ns}"}}') == 7
    assert _sample(text, f'infra_cache_misses_total{{namespace="{ns}"}}') == 3
    assert _sample(text, f'infra_cache_entries{{namespace="{ns}"}}') == 3
    assert _sample(text, f'infra_cache_bytes{{namespace="{ns}"}}') > 0
    assert _sample(render_openmetrics(), f'infra_cache_hits_total{{namespace="{ns}"}}') == 7
    doc = json_document()
    assert doc["stats"]["cache"][ns]["hits"] == 7
    assert cache.get_stats()["namespaces"][ns]["hit_rate"] == stats["hit_rate"]


def test_single_flight_counts_every_call_exactly_once_when_leaders_fail(cache: Cache) -> None:
    """80,000 threaded get_or_compute calls: hits + misses == 80,000; a follower handed the leader's
    exception is a miss, never a hit (today: 80,002, and failed followers counted as hits)."""
    ns = _ns()
    threads, per_thread, n_keys = 8, 10_000, 2_000
    computes = [0]
    computes_raised = [0]
    raised = [0]
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def compute(k: int) -> int:
        with lock:
            computes[0] += 1
            if k % 7 == 0:
                computes_raised[0] += 1
        if k % 7 == 0:
            raise RuntimeError("boom")
        return k

    def work(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            k = (i * 31 + t * 17) % n_keys
            try:
                cache.get_or_compute(ns, f"k{k}", lambda k=k: compute(k))
            except RuntimeError:
                with lock:
                    raised[0] += 1

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    st = cache.namespace_stats(ns)
    assert st["hits"] + st["misses"] == threads * per_thread
    # every miss either computed or was handed a failed leader's exception
    assert st["misses"] == computes[0] + (raised[0] - computes_raised[0])
    assert get_metrics().get_stats()["cache"][ns]["hits"] == st["hits"]


def test_one_outlier_in_a_hundred_is_the_p99_and_two_samples_show_the_slow_one() -> None:
    reg = MetricsRegistry()
    h = reg.histogram("infra_operation_duration_seconds", "", ("operation",))
    for _ in range(99):
        h.labels("op").observe(0.010)
    h.labels("op").observe(2.0)
    h.labels("two").observe(0.000006)
    h.labels("two").observe(0.000165)
    st = reg.get_stats()
    assert st["op"]["p95_ms"] == pytest.approx(10, rel=0.01)
    assert st["op"]["p99_ms"] == pytest.approx(2000, rel=0.01)
    assert st["two"]["p95_ms"] == pytest.approx(0.165, abs=0.002)
    assert st["two"]["p99_ms"] == pytest.approx(0.165, abs=0.002)


def test_sketch_quantiles_are_numpy_higher_within_one_percent() -> None:
    rng = np.random.default_rng(16)
    for n in (1, 2, 3, 10, 100, 1000, 12345):
        data = rng.lognormal(-4, 1.5, n)
        sk = QuantileSketch()
        sk.add_many(data)
        for q in (0.5, 0.95, 0.99, 0.999):
            exact = float(np.quantile(data, q, method="higher"))
            assert sk.quantile(q) == pytest.approx(exact, rel=0.0101), (n, q)


def _histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile (promql/quantile.go bucketQuantile) over cumulative (le, count)."""
    count = buckets[-1][1]
    rank = q * count
    i = next(i for i, (_, c) in enumerate(buckets) if c >= rank)
    if i == len(buckets) - 1:
        return buckets[-2][0]
    lo, lo_count = (0.0, 0.0) if i == 0 else buckets[i - 1]
    hi, hi_count = buckets[i]
    return lo + (hi - lo) * (rank - lo_count) / (hi_count - lo_count)


def test_p99_agrees_with_prometheus_histogram_quantile_over_the_same_series() -> None:
    """With fine buckets (2 % apart) Prometheus' interpolated p99 and ours differ by the two
    resolutions only: the sketch's 1 % plus one bucket's 2 %."""
    bounds = [0.001 * 1.02**i for i in range(400)]
    reg = MetricsRegistry()
    h = reg.histogram("infra_operation_duration_seconds", "", ("operation",), buckets=bounds)
    rng = np.random.default_rng(4)
    for v in rng.lognormal(-3, 0.8, 20_000):
        h.labels("op").observe(float(v))
    doc = json_document(reg)
    [fam] = [m for m in doc["metrics"] if m["name"] == "infra_operation_duration_seconds"]
    cum = [(float(le), float(c)) for le, c in fam["series"][0]["buckets"].items()]
    for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
        prom = _histogram_quantile(q, cum) * 1000
        assert reg.get_stats()["op"][key] == pytest.approx(prom, rel=0.03), q


def test_http_ollama_and_db_latencies_are_operations_of_get_stats() -> None:
    """Each part declares its view beside its histogram (the metrics layer knows none of them)."""
    import infra.db
    import infra.http
    import infra.ollama

    assert infra.db.StatementTimer and infra.http.AsyncPerfClient and infra.ollama.OptimizedOllama  # loaded
    reg = MetricsRegistry()
    http = reg.histogram("infra_http_request_duration_seconds", "", ("origin", "method", "code"))
    http.labels("http://127.0.0.1:1", "GET", "2xx").observe(0.01)
    http.labels("http://127.0.0.1:1", "GET", "5xx").observe(0.02)
    http.labels("http://127.0.0.1:1", "GET", "error").observe(0.03)
    http.labels("http://127.0.0.1:1", "POST", "2xx").observe(0.04)
    oll = reg.histogram("infra_ollama_request_duration_seconds", "", ("model", "operation", "cache"))
    oll.labels("llama3", "generate", "hit").observe(0.001)
    oll.labels("llama3", "generate", "miss").observe(1.0)
    reg.counter("infra_ollama_errors_total", "", ("model", "operation")).labels("llama3", "generate").inc()
    db = reg.histogram("infra_db_query_duration_seconds", "", ("statement", "outcome"))
    db.labels("get_user", "ok").observe(0.002)
    db.labels("get_user", "error").observe(0.003)
    st = reg.get_stats()
    assert (st["http GET http://127.0.0.1:1"]["count"], st["http GET http://127.0.0.1:1"]["errors"]) == (3, 2)
    assert st["http GET http://127.0.0.1:1"]["p99_ms"] == pytest.approx(30, rel=0.01)
    assert st["http POST http://127.0.0.1:1"]["errors"] == 0
    assert (st["ollama generate llama3"]["count"], st["ollama generate llama3"]["errors"]) == (2, 1)
    assert (st["db get_user"]["count"], st["db get_user"]["errors"]) == (2, 1)
    for row in (v for k, v in st.items() if k != "cache"):
        assert {"count", "errors", "p50_ms", "p95_ms", "p99_ms", "avg_ms"} <= set(row)


def test_a_custom_operation_view_adds_rows_and_a_failing_collect_hook_never_breaks_a_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from infra.metrics import OperationView

    reg = MetricsRegistry()
    h = reg.histogram("app_step_seconds", "", ("step", "result"))
    h.labels("parse", "ok").observe(0.002)
    h.labels("parse", "failed").observe(0.004)
    reg.add_operation_view(
        OperationView(
            histogram="app_step_seconds",
            row="step {step}",
            error_label="result",
            error_values=frozenset({"failed"}),
        )
    )
    calls = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("hook down")

    reg.add_collect_hook(broken)
    reg.add_collect_hook(broken)  # once per callable
    st = reg.get_stats()
    assert (st["step parse"]["count"], st["step parse"]["errors"]) == (2, 1)
    assert "app_step_seconds" in render_text(reg)
    assert len(calls) == 2  # get_stats and render each ran it once
    assert sum("hook down" in r.getMessage() for r in caplog.records) == 1  # logged once
    with pytest.raises(ValueError, match="go together"):
        OperationView(histogram="x", row="{a}", error_label="a")


def test_gauge_aggregate_rule_is_checked_and_kept() -> None:
    reg = MetricsRegistry()
    g = reg.gauge("store_entries", aggregate="max")
    assert g.aggregate == "max" and reg.gauge("store_entries", aggregate="max") is g
    with pytest.raises(ValueError, match="aggregate"):
        reg.gauge("store_entries", aggregate="sum")
    with pytest.raises(ValueError, match="aggregate must be one of"):
        reg.gauge("other", aggregate="avg")
    assert reg.gauge("store_entries") is g  # looked up without a rule: no conflict


async def test_async_single_flight_followers_of_a_failed_leader_are_misses(cache: Cache) -> None:
    import asyncio

    ns = _ns()
    started = asyncio.Event()

    async def failing() -> int:
        started.set()
        await asyncio.sleep(0.05)
        raise RuntimeError("boom")

    async def call() -> None:
        with pytest.raises(RuntimeError):
            await cache.aget_or_compute(ns, "k", failing)

    leader = asyncio.create_task(call())
    await started.wait()
    await asyncio.gather(leader, *(call() for _ in range(9)))
    st = cache.namespace_stats(ns)
    assert (st["hits"], st["misses"]) == (0, 10)


def test_a_stats_section_is_a_part_s_own_and_a_failing_one_never_breaks_a_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from infra.cache.observability import cache_section

    reg = MetricsRegistry()
    reg.counter("infra_cache_hits_total", "", ("namespace",)).labels("ns").inc(3)
    reg.counter("infra_cache_misses_total", "", ("namespace",)).labels("ns").inc()
    assert reg.get_stats()["cache"] == cache_section(reg)
    assert cache_section(reg)["ns"] == {
        "hits": 3, "misses": 1, "hit_rate": 0.75, "errors": 0, "compute_seconds_saved": 0.0
    }  # fmt: skip

    def broken(_: MetricsRegistry) -> dict[str, int]:
        raise RuntimeError("section down")

    reg.add_stats_section("mine", broken)
    with timed("mine", registry=reg):  # an operation named like a section goes under "operations"
        pass
    st = reg.get_stats()
    assert "mine" not in st and st["operations"]["mine"]["count"] == 1 and "ns" in st["cache"]
    reg.get_stats()
    assert sum("section down" in r.getMessage() for r in caplog.records) == 1  # logged once


def test_the_metrics_layer_names_no_part_s_metric() -> None:
    """The registry knows the layer's own names only; each part declares its own (issue 19)."""
    import re

    root = Path(__file__).resolve().parents[2] / "infra" / "metrics"
    own = re.compile(r"infra_(metrics|operation)_\w+")
    for path in root.glob("*.py"):
        names = set(re.findall(r"infra_[a-z]+_\w+", path.read_text()))
        assert {n for n in names if not own.fullmatch(n)} == set(), path.name
