"""Issue 16 through the CLI: `metrics show` of a live endpoint, `cache stats` of every process's counts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.cache import MISSING, Cache, CacheConfig
from infra.metrics import timed
from infra.server import serve_metrics

REPO = Path(__file__).resolve().parents[2]


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERF_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "infra", *argv], capture_output=True, text=True, env=env, timeout=60
    )


WORKER = """
import sys
from infra.cache import Cache, CacheConfig, MISSING
c = Cache(CacheConfig(path=sys.argv[1]))
ns, hits, misses = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for i in range(misses):
    assert c.get(ns, f"m{i}") is MISSING
c.set(ns, "k", "v", cost=0.25)
for _ in range(hits):
    assert c.get(ns, "k") == "v"
if sys.argv[5] == "close":
    c.close()
else:  # exits without close(): the exit hook pushes the last counts
    pass
"""


def _ns() -> str:
    return "c" + uuid.uuid4().hex[:10]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "perf_config.json"
    path.write_text(json.dumps({"cache": {"path": str(tmp_path / "cache.db")}}))
    return path


def _stats(config: Path, *extra: str) -> dict[str, Any]:
    result = run("cache", "stats", "--json", "--config", str(config), *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_cache_stats_from_another_process_shows_every_process_s_hits(config: Path, tmp_path: Path) -> None:
    """Two worker processes count 7+5 hits and 3+2 misses; `cache stats` (a third) shows 12 / 5, with
    hit rate as a column; `--reset` zeroes them."""
    ns = _ns()
    db = str(tmp_path / "cache.db")
    for hits, misses, end in ((7, 3, "close"), (5, 2, "exit")):
        subprocess.run(
            [sys.executable, "-c", WORKER, db, ns, str(hits), str(misses), end], check=True, timeout=60
        )
    st = _stats(config)
    assert st["counts"] == "fleet"
    row = st["namespaces"][ns]
    assert (row["hits"], row["misses"]) == (12, 5)
    assert row["hit_rate"] == round(12 / 17, 6)
    assert row["compute_seconds_saved"] == pytest.approx(12 * 0.25)
    text = run("cache", "stats", "--config", str(config))
    assert text.returncode == 0, text.stderr
    [line] = [ln for ln in text.stdout.splitlines() if ln.startswith(ns)]
    assert "hit rate" in text.stdout and "70.6%" in line
    assert _stats(config, "--reset")["namespaces"][ns]["hits"] == 12
    assert ns not in _stats(config)["namespaces"] or _stats(config)["namespaces"][ns]["hits"] == 0


@pytest.fixture
def live_endpoint(tmp_path: Path) -> Iterator[tuple[str, str]]:
    ns = _ns()
    cache = Cache(CacheConfig(path=str(tmp_path / "live.db")))
    assert cache.get(ns, "k") is MISSING
    cache.set(ns, "k", 1)
    for _ in range(4):
        assert cache.get(ns, "k") == 1
    for _ in range(3):
        with timed("numbers16_stage"):
            pass
    srv = serve_metrics(port=0)
    try:
        yield srv.url, ns
    finally:
        srv.close()
        cache.close()


def test_metrics_show_prints_the_operations_and_cache_tables_of_a_live_endpoint(
    live_endpoint: tuple[str, str],
) -> None:
    url, ns = live_endpoint
    result = run("metrics", "show", "--url", url)
    assert result.returncode == 0, result.stderr
    assert "no operations recorded yet" not in result.stdout
    [op] = [ln for ln in result.stdout.splitlines() if ln.startswith("numbers16_stage")]
    assert op.split()[1] == "3"
    [row] = [ln for ln in result.stdout.splitlines() if ln.startswith(ns)]
    assert row.split()[1:4] == ["4", "1", "80.0%"]
    as_json = run("metrics", "show", "--url", url, "--json")
    stats = json.loads(as_json.stdout)
    assert stats["numbers16_stage"]["count"] == 3
    assert stats["cache"][ns]["hit_rate"] == 0.8


@pytest.mark.parametrize(
    "url", ["notaurl", "http://127.0.0.1:1/metrics", "http://[::1", "http://h:x/m", "ftp://h/m"]
)
def test_metrics_show_bad_url_is_one_line_and_json_under_json(url: str) -> None:
    plain = run("metrics", "show", "--url", url)
    assert plain.returncode == 1
    assert plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr and url in plain.stderr
    as_json = run("metrics", "show", "--url", url, "--json")
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert doc["url"] == url and doc["error"]


UNCACHEABLE_WORKER = """
import sys
from infra.cache import Cache, CacheConfig, cached
c = Cache(CacheConfig(path=sys.argv[1]))

@cached(namespace=sys.argv[2], cache=c)
def f(x):
    return 1

for _ in range(3):
    f(iter([1, 2]))  # a list_iterator: no cache key, runs uncached, counted
assert c.get_stats()["namespaces"][sys.argv[2]]["uncacheable"] == 3
"""


def test_cache_stats_shows_uncacheable_calls_and_no_hit_rate_without_lookups(
    config: Path, tmp_path: Path
) -> None:
    """A worker whose 3 calls were all uncacheable: `cache stats` has its row (uncacheable 3) and a hit
    rate of "-" (JSON null), not 0 %: no lookup happened, none missed."""
    _stats(config, "--reset")
    ns = _ns()
    subprocess.run([sys.executable, "-c", UNCACHEABLE_WORKER, str(tmp_path / "cache.db"), ns], check=True)
    st = _stats(config)
    row = st["namespaces"][ns]
    assert (row["hits"], row["misses"], row["uncacheable"], row["hit_rate"]) == (0, 0, 3, None)
    assert (st["hits"], st["misses"], st["uncacheable"], st["hit_rate"]) == (0, 0, 3, None)
    text = run("cache", "stats", "--config", str(config))
    assert text.returncode == 0, text.stderr
    assert "0 of 0 lookups (-)" in text.stdout
    assert "uncacheable: 3 calls ran uncached" in text.stdout
    # the cause may be an instance member (a random.Random), not only the arguments; the log names it
    assert "the instance's members" in text.stdout and "not cacheable' warning" in text.stdout
    [line] = [ln for ln in text.stdout.splitlines() if ln.startswith(ns)]
    assert line.split()[4:8] == ["0", "0", "-", "3"]  # hits, misses, hit rate, uncacheable


SIGTERM_WORKER = """
import os, signal, sys
from infra.cache import Cache, CacheConfig, fleet_stats
fleet_stats.PUSH_INTERVAL = 3600.0  # only the SIGTERM handler can push the last 30
c = Cache(CacheConfig(path=sys.argv[1]))
ns = sys.argv[2]
c.set(ns, "k", "v")
for _ in range(50):
    assert c.get(ns, "k") == "v"
fleet_stats.push_now(c)
for _ in range(30):
    assert c.get(ns, "k") == "v"
print("ready", flush=True)
sys.stdin.readline()
os.kill(os.getpid(), signal.SIGTERM)
"""


def test_cache_stats_counts_a_worker_stopped_by_sigterm(config: Path, tmp_path: Path) -> None:
    """The trial of issue (docker stop): 50 hits, 30 more, SIGTERM; `cache stats` shows 80, and the worker
    still died by SIGTERM."""
    _stats(config, "--reset")
    ns = _ns()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, "-c", SIGTERM_WORKER, str(tmp_path / "cache.db"), ns],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as worker:
        assert worker.stdout is not None and worker.stdin is not None
        assert worker.stdout.readline() == "ready\n"
        assert _stats(config)["namespaces"][ns]["hits"] == 50
        worker.stdin.write("go\n")
        worker.stdin.flush()
        assert worker.wait(timeout=60) == -signal.SIGTERM
    assert _stats(config)["namespaces"][ns]["hits"] == 80


def test_metrics_show_without_an_endpoint_says_how_to_serve_the_workers_own_metrics() -> None:
    result = run("metrics", "show", "--url", "http://127.0.0.1:1/metrics")
    assert result.returncode == 1
    advice = result.stderr
    for words in (
        "metrics.serve: true",
        "infra.serve_metrics()",
        "INFRA_METRICS_MULTIPROC_DIR",
        "cache stats",
    ):
        assert words in advice


def test_metrics_show_prints_no_hit_rate_for_a_namespace_without_lookups() -> None:
    from infra.cli.metrics import render_stats

    text = render_stats({"cache": {"n": {"hits": 0, "misses": 0, "hit_rate": 0.0, "errors": 0}}})
    [row] = [ln for ln in text.splitlines() if ln.startswith("n ")]
    assert row.split()[1:4] == ["0", "0", "-"]
