"""grafana/perf-infra-dashboard.json: every panel query returns data from a real Prometheus that scraped a
worker after it ran the workload (and the file is a dashboard Grafana imports)."""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_process import running_prometheus

from infra.metrics import get_metrics
from infra.server import serve_metrics
from infra.testing.dashboard_workload import run_workload

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "grafana" / "perf-infra-dashboard.json"
JOB = "perf-infra-worker"
# What Grafana substitutes before sending a query: the rate window (4 x our 1 s scrape interval is
# Grafana's own floor for $__rate_interval) and the job variable (here: the one job).
VARIABLES = {"$__rate_interval": "1m", "$job": JOB}


def _targets() -> list[tuple[str, str, str]]:
    doc = json.loads(DASHBOARD.read_text())
    out = []
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["refId"], target["expr"]))
    return out


def _expand(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr!r}"
    return expr


def _query(api: str, promql: str) -> dict[str, Any]:
    url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as e:  # a bad query is a 400 with the error in the body
        return json.loads(e.read())  # type: ignore[no-any-return]


def _value(api: str, promql: str) -> float | None:
    doc = _query(api, promql)
    result = doc.get("data", {}).get("result") if doc.get("status") == "success" else None
    return float(result[0]["value"][1]) if result else None


def test_dashboard_json_is_an_importable_grafana_dashboard() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["__inputs"][0]["pluginId"] == "prometheus" and doc["uid"] and doc["schemaVersion"] >= 36
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    targets = _targets()
    assert len(targets) >= 20
    for title, _, expr in targets:
        assert 'job=~"$job"' in expr, title  # every panel follows the job picker
    titles = " ".join(p["title"] for p in doc["panels"]).lower()
    for what in (
        "hit rate",
        "p50",
        "errors",
        "saved",
        "entries",
        "bytes",
        "breaker",
        "retry budget",
        "ollama",
    ):
        assert what in titles, what


@pytest.fixture
def prometheus(prometheus_bin: str, tmp_path: Path) -> Iterator[str]:
    """Prometheus scraping this process's /metrics every second as job JOB; yields its API base URL."""
    target = serve_metrics(port=0)
    try:
        with running_prometheus(prometheus_bin, tmp_path, target.port, job=JOB) as api:
            yield api
    finally:
        target.close()


def _wait(what: str, check: Any, deadline_s: float = 90.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if check():
                return
        except OSError:  # Prometheus not listening yet
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_every_panel_query_returns_data_from_prometheus_scraping_a_worker(
    prometheus: str, tmp_path: Path
) -> None:
    api = prometheus
    # Scraped once before the workload, so every counter and histogram has a before and an after.
    _wait("the first scrape", lambda: _value(api, f'up{{job="{JOB}"}}') == 1.0)
    _wait(
        "a scrape of the worker",
        lambda: (
            _value(api, f'count(infra_cache_hits_total{{job="{JOB}"}})') is not None
            or _value(api, f'count(up{{job="{JOB}"}})') == 1.0
        ),
    )
    hits = get_metrics().counter("infra_cache_hits_total", "", ("namespace",))

    def scraped_after(n: int) -> None:  # Prometheus has seen the round (and its new series)
        done = sum(c.get() for c in hits.children())
        _wait(
            f"a scrape after round {n}",
            lambda: (_value(api, f'sum(infra_cache_hits_total{{job="{JOB}"}})') or 0) >= done,
        )

    # Two rounds with a scrape between: series born in round 1 have a before and an after.
    run_workload(tmp_path / "work", rounds=2, between_rounds=scraped_after)
    scraped_after(2)
    problems = []
    for title, ref, expr in _targets():
        doc = _query(api, _expand(expr))
        if doc.get("status") != "success":
            problems.append(f"{title} [{ref}]: query error {doc.get('error')!r}")
            continue
        result = doc["data"]["result"]
        values = [float(s["value"][1]) for s in result]
        if not values:
            problems.append(f"{title} [{ref}]: empty result for {expr}")
        elif all(math.isnan(v) for v in values):
            problems.append(f"{title} [{ref}]: only NaN for {expr}")
    assert not problems, "\n".join(problems)

    # The job variable's own query (label_values(metric, job)) finds the worker.
    definition = json.loads(DASHBOARD.read_text())["templating"]["list"][0]["definition"]
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", definition).groups()  # type: ignore[union-attr]
    assert _value(api, f"count by ({label}) ({metric})") is not None
