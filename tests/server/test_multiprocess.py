"""Multi-process serving: one combined /metrics and get_stats() over every worker, restarts included."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.metrics import MetricsRegistry
from infra.metrics.multiprocess import MultiProcess, load_snapshot, snapshot

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()  # type: ignore[no-any-return]


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("gunicorn")
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{HERE}",
        "INFRA_METRICS_MULTIPROC_DIR": str(tmp_path / "mp"),
        "MP_CACHE_PATH": str(tmp_path / "cache.db"),
    }
    log = (tmp_path / "gunicorn.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "4", "-b", f"127.0.0.1:{port}", "--max-requests", "60",
         "--graceful-timeout", "10", "mp_app:app"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(url + "/?warmup")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError((tmp_path / "gunicorn.log").read_text()) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _combined(url: str) -> dict[str, Any]:
    return json.loads(_get(url + "/metrics?format=json"))  # type: ignore[no-any-return]


def _value(doc: dict[str, Any], name: str, labels: dict[str, str], field: str = "value") -> float:
    for m in doc["metrics"]:
        if m["name"] == name:
            for s in m["series"]:
                if s["labels"] == labels:
                    return float(s[field])
    return 0.0


def test_gunicorn_4_workers_with_restarts_one_combined_metrics_equals_every_request(gunicorn: str) -> None:
    """800 requests over 4 workers recycled every 60 requests: the combined counts are exactly the
    requests served (plus the warm-up one), from whichever worker answers the scrape."""
    n_threads, per_thread = 8, 100
    pids: Counter[str] = Counter()
    lock = threading.Lock()

    def load(t: int) -> None:
        for i in range(per_thread):
            pid = _get(f"{gunicorn}/?k{(t * per_thread + i) % 50}").decode()
            with lock:
                pids[pid] += 1

    threads = [threading.Thread(target=load, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = n_threads * per_thread + 1  # + the fixture's warm-up request
    assert sum(pids.values()) == total - 1
    assert len(pids) > 4, "workers were recycled (max-requests 60), so more than 4 pids served"
    deadline = time.monotonic() + 30  # other workers' snapshots are up to 0.5 s old
    while True:
        doc = _combined(gunicorn)
        timed_count = _value(doc, "infra_operation_duration_seconds", {"operation": "mp_work"}, "count")
        hits = _value(doc, "infra_cache_hits_total", {"namespace": "mp"})
        misses = _value(doc, "infra_cache_misses_total", {"namespace": "mp"})
        if (timed_count, hits + misses) == (total, total) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert timed_count == total
    assert hits + misses == total
    stats = doc["stats"]
    assert stats["mp_work"]["count"] == total
    assert stats["cache"]["mp"]["hits"] + stats["cache"]["mp"]["misses"] == total
    # Prometheus text from another scrape agrees with the JSON one.
    text = _get(gunicorn + "/metrics").decode()
    prefix = 'infra_operation_duration_seconds_count{operation="mp_work"}'
    [line] = [ln for ln in text.splitlines() if ln.startswith(prefix)]
    assert float(line.rsplit(" ", 1)[1]) == total


WORKER = """
import sys
from infra.metrics import get_metrics
reg = get_metrics()
reg.counter("mp_requests_total", "", ("route",)).labels("a").inc(int(sys.argv[1]))
h = reg.histogram("mp_latency_seconds", "", ())
for i in range(int(sys.argv[1])):
    h.observe(0.001 * (i + 1))
reg.gauge("mp_inflight", "", ()).set(5)
reg.gauge("mp_store_entries", "", (), aggregate="max").set(40)
"""


def test_dead_workers_are_folded_into_one_archive_and_their_counts_kept(tmp_path: Path) -> None:
    """30 short-lived workers: their counters and histograms stay in the combined view, their gauges
    go, and the directory holds one archive instead of 30 files."""
    d = tmp_path / "mp"
    env = {**os.environ, "PYTHONPATH": str(REPO), "INFRA_METRICS_MULTIPROC_DIR": str(d)}
    for n in range(1, 31):
        subprocess.run([sys.executable, "-c", WORKER, str(n)], env=env, check=True, timeout=60)
    here = MultiProcess(d, MetricsRegistry())
    reg = here.combined()
    assert sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) == ["archive.json"]
    assert reg.counter("mp_requests_total", "", ("route",)).labels("a").get() == sum(range(1, 31))
    [series] = reg.histogram_stats("mp_latency_seconds")
    assert series["count"] == sum(range(1, 31))
    assert series["max"] == pytest.approx(0.030)
    assert reg.get("mp_inflight") is None or reg.gauge("mp_inflight").get() == 0
    # and again: nothing left to fold, same numbers
    again = here.combined()
    assert again.histogram_stats("mp_latency_seconds")[0]["count"] == series["count"]


def test_live_gauges_combine_by_their_rule_and_histograms_merge_exactly() -> None:
    a, b = MetricsRegistry(), MetricsRegistry()
    for reg, inflight, entries in ((a, 2, 40), (b, 3, 41)):
        reg.gauge("inflight").set(inflight)
        reg.gauge("entries", aggregate="max").set(entries)
    ha, hb = a.histogram("lat_seconds"), b.histogram("lat_seconds")
    for i in range(1, 1001):
        (ha if i % 2 else hb).observe(i / 1000)
    out = MetricsRegistry()
    seen: set[Any] = set()
    load_snapshot(out, snapshot(a), seen=seen)
    load_snapshot(out, snapshot(b), seen=seen)
    assert out.gauge("inflight").get() == 5
    assert out.gauge("entries", aggregate="max").get() == 41
    one = MetricsRegistry()
    h1 = one.histogram("lat_seconds")
    for i in range(1, 1001):
        h1.observe(i / 1000)
    merged = out.histogram("lat_seconds")
    assert merged.labels().sketch() == h1.labels().sketch()
    [got], [want] = out.histogram_stats("lat_seconds"), one.histogram_stats("lat_seconds")
    assert got == {**want, "sum": pytest.approx(want["sum"]), "mean": pytest.approx(want["mean"])}
    assert merged.labels().cumulative()[0] == h1.labels().cumulative()[0]
