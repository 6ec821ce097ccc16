"""A real Prometheus server scrapes serve_metrics on 127.0.0.1: up == 1, histogram_quantile agrees."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.metrics import MetricsRegistry
from infra.server import serve_metrics

pytestmark = pytest.mark.services

TOKEN = "scrape-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


@pytest.fixture
def prometheus(prometheus_bin: str, tmp_path: Path, registry: MetricsRegistry) -> Iterator[tuple[str, str]]:
    """(Prometheus API base URL, our /metrics URL); Prometheus scrapes us every second with the token."""
    target = serve_metrics(port=0, token=TOKEN, registry=registry)
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: infra\n"
        f"    authorization:\n      credentials: {TOKEN}\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{target.port}']\n"
    )
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            prometheus_bin,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}", target.url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
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
