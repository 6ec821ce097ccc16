"""A real Prometheus server scrapes serve_metrics on 127.0.0.1: up == 1, histogram_quantile agrees, and the
cache hit counter it stores equals the hits made."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_process import running_prometheus

from infra.cache import MISSING, Cache, CacheConfig
from infra.metrics import MetricsRegistry
from infra.server import serve_metrics

pytestmark = pytest.mark.services

TOKEN = "scrape-token"


def _query(api: str, promql: str) -> list[dict[str, object]]:
    url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as r:
        doc = json.loads(r.read())
    assert doc["status"] == "success", doc
    return doc["data"]["result"]  # type: ignore[no-any-return]


def _wait_for(api: str, promql: str, deadline_s: float = 60.0) -> list[dict[str, object]]:
    end = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < end:
        try:
            result = _query(api, promql)
            if result:
                return result
            last = result
        except OSError as exc:  # not listening yet
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"Prometheus never answered {promql!r} (last: {last!r})")


@contextlib.contextmanager
def _prometheus(prometheus_bin: str, tmp_path: Path, target: Any) -> Iterator[tuple[str, str]]:
    """A real Prometheus scraping ``target`` (a MetricsServer) every second with the token."""
    with running_prometheus(prometheus_bin, tmp_path, target.port, job="infra", token=TOKEN) as api:
        yield api, target.url


@pytest.fixture
def prometheus(prometheus_bin: str, tmp_path: Path, registry: MetricsRegistry) -> Iterator[tuple[str, str]]:
    """(Prometheus API base URL, our /metrics URL); Prometheus scrapes us every second with the token."""
    target = serve_metrics(port=0, token=TOKEN, registry=registry)
    try:
        with _prometheus(prometheus_bin, tmp_path, target) as urls:
            yield urls
    finally:
        target.close()


def test_real_prometheus_scrapes_up_and_its_p99_matches_the_json_p99(prometheus: tuple[str, str]) -> None:
    api, metrics_url = prometheus
    [up] = _wait_for(api, 'up{job="infra"} == 1')
    assert up["value"][1] == "1"  # type: ignore[index]
    [res] = _wait_for(api, 'histogram_quantile(0.99, infra_test_latency_seconds_bucket{op="uniform"})')
    promql_p99 = float(res["value"][1])  # type: ignore[index]
    req = urllib.request.Request(metrics_url + "?format=json", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        doc = json.loads(r.read())
    [fam] = [m for m in doc["metrics"] if m["name"] == "infra_test_latency_seconds"]
    json_p99 = fam["series"][0]["p99"]
    # 1000 values 1 ms .. 1 s: the p99 (0.99) lies in the (0.75, 1.0] bucket. Prometheus interpolates
    # inside that bucket, our sketch is within 1%: both must agree to the bucket's resolution.
    assert 0.75 < promql_p99 <= 1.0
    assert 0.75 < json_p99 <= 1.0
    assert abs(promql_p99 - json_p99) <= 0.25
    assert json_p99 == pytest.approx(0.99, rel=0.01)
    assert promql_p99 == pytest.approx(0.99, rel=0.01)  # uniform data: linear interpolation is exact
    [count] = _wait_for(api, 'infra_test_latency_seconds_count{op="uniform"}')
    assert float(count["value"][1]) == 1000  # type: ignore[index]


def test_real_prometheus_sees_exactly_the_cache_hits_made_before_it_scraped(
    prometheus_bin: str, tmp_path: Path
) -> None:
    """37 hits and 3 misses on a real cache, then no further cache call: Prometheus' scrapes of the
    process-wide registry show exactly 37 and 3 (the pending hits are folded on every scrape)."""
    ns = "prom" + uuid.uuid4().hex[:8]
    cache = Cache(CacheConfig(path=str(tmp_path / "cache.db")))
    for i in range(3):
        cache.set(ns, f"k{i}", i)
        assert cache.get(ns, f"missing{i}") is MISSING
    for i in range(37):
        assert cache.get(ns, f"k{i % 3}") == i % 3
    target = serve_metrics(port=0, token=TOKEN)
    try:
        with _prometheus(prometheus_bin, tmp_path, target) as (api, _):
            [hits] = _wait_for(api, f'infra_cache_hits_total{{namespace="{ns}"}}')
            [misses] = _wait_for(api, f'infra_cache_misses_total{{namespace="{ns}"}}')
            assert float(hits["value"][1]) == 37  # type: ignore[index]
            assert float(misses["value"][1]) == 3  # type: ignore[index]
            [entries] = _wait_for(api, f'infra_cache_entries{{namespace="{ns}"}}')
            assert float(entries["value"][1]) == 3  # type: ignore[index]
    finally:
        target.close()
        cache.close()
