"""Multi-process serving: one combined /metrics and get_stats() over every worker, restarts included."""

from __future__ import annotations

import contextlib
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
from hypothesis import given, settings
from hypothesis import strategies as st

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


@contextlib.contextmanager
def _server(tmp_path: Path, argv: list[str], port: int) -> Iterator[str]:
    """A multi-process server (``argv``) with INFRA_METRICS_MULTIPROC_DIR set, once it answers."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{HERE}",
        "INFRA_METRICS_MULTIPROC_DIR": str(tmp_path / "mp"),
        "MP_CACHE_PATH": str(tmp_path / "cache.db"),
    }
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(url + "/?warmup")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError((tmp_path / "server.log").read_text()) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("gunicorn")
    port = _free_port()
    argv = [sys.executable, "-m", "gunicorn", "-w", "4", "-b", f"127.0.0.1:{port}", "--max-requests", "60",
            "--graceful-timeout", "10", "mp_app:app"]  # fmt: skip
    with _server(tmp_path, argv, port) as url:
        yield url


@pytest.fixture
def uvicorn_workers(tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("uvicorn")
    port = _free_port()
    argv = [sys.executable, "-m", "uvicorn", "--workers", "3", "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log", "mp_app:asgi_app"]  # fmt: skip
    with _server(tmp_path, argv, port) as url:
        yield url


def _wait_combined(url: str, total: int) -> dict[str, Any]:
    """The combined JSON document once it shows ``total`` timed requests (others' snapshots lag <= 0.5 s)."""
    deadline = time.monotonic() + 30
    while True:
        doc = _combined(url)
        timed_count = _value(doc, "infra_operation_duration_seconds", {"operation": "mp_work"}, "count")
        hits = _value(doc, "infra_cache_hits_total", {"namespace": "mp"})
        misses = _value(doc, "infra_cache_misses_total", {"namespace": "mp"})
        if (timed_count, hits + misses) == (total, total) or time.monotonic() > deadline:
            return doc
        time.sleep(0.2)


def _load(url: str, n_threads: int, per_thread: int) -> Counter[str]:
    pids: Counter[str] = Counter()
    lock = threading.Lock()

    def run(t: int) -> None:
        for i in range(per_thread):
            pid = _get(f"{url}/?k{(t * per_thread + i) % 50}").decode()
            with lock:
                pids[pid] += 1

    threads = [threading.Thread(target=run, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return pids


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
    pids = _load(gunicorn, 8, 100)
    total = 800 + 1  # + the fixture's warm-up request
    assert sum(pids.values()) == 800
    assert len(pids) > 4, "workers were recycled (max-requests 60), so more than 4 pids served"
    doc = _wait_combined(gunicorn, total)
    assert _value(doc, "infra_operation_duration_seconds", {"operation": "mp_work"}, "count") == total
    hits = _value(doc, "infra_cache_hits_total", {"namespace": "mp"})
    assert hits + _value(doc, "infra_cache_misses_total", {"namespace": "mp"}) == total
    stats = doc["stats"]
    assert stats["mp_work"]["count"] == total
    assert stats["cache"]["mp"]["hits"] + stats["cache"]["mp"]["misses"] == total
    # Prometheus text from another scrape agrees with the JSON one.
    text = _get(gunicorn + "/metrics").decode()
    prefix = 'infra_operation_duration_seconds_count{operation="mp_work"}'
    [line] = [ln for ln in text.splitlines() if ln.startswith(prefix)]
    assert float(line.rsplit(" ", 1)[1]) == total


def test_uvicorn_workers_spawned_not_forked_combine_too(uvicorn_workers: str) -> None:
    pids = _load(uvicorn_workers, 6, 50)
    total = 300 + 1
    assert sum(pids.values()) == 300
    doc = _wait_combined(uvicorn_workers, total)
    assert doc["stats"]["mp_work"]["count"] == total
    assert doc["stats"]["cache"]["mp"]["hits"] + doc["stats"]["cache"]["mp"]["misses"] == total


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


FORKER = """
import os, sys
from infra.metrics import get_metrics
from infra.metrics.multiprocess import enable
mp = enable(sys.argv[1])
c = get_metrics().counter("fork_events_total", "", ())
c.inc(5)                      # the parent's own
pid = os.fork()
if pid == 0:                  # a forked worker starts from zero: it must not re-count the parent's 5
    c.inc(3)
    mp.close()
    os._exit(0)
os.waitpid(pid, 0)
get_metrics().get_stats()      # a read: combines the worker's final snapshot
print(int(get_metrics().combined_view().counter("fork_events_total").get()))
"""


def test_a_forked_worker_counts_only_what_it_did(tmp_path: Path) -> None:
    """multiprocessing / prefork: parent 5 + child 3 combine to 8, not 5 + (5 + 3)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("INFRA_METRICS_MULTIPROC_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", FORKER, str(tmp_path / "mp")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "8"


def test_an_unusable_directory_fails_open_with_one_error_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {**os.environ, "PYTHONPATH": str(REPO), "INFRA_METRICS_MULTIPROC_DIR": str(blocker / "mp")}
    code = "import infra.metrics as m; m.timed('x').__enter__(); print(m.get_metrics().multiprocess)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert "INFRA_METRICS_MULTIPROC_DIR" in out.stderr and "Traceback" not in out.stderr


@given(
    st.lists(st.floats(min_value=0.0, max_value=1e4, allow_nan=False), max_size=200),
    st.lists(st.floats(min_value=0.0, max_value=1e4, allow_nan=False), max_size=200),
)
@settings(max_examples=60, deadline=None)
def test_combining_two_workers_equals_one_stream_of_both(left: list[float], right: list[float]) -> None:
    """Exactness of the merge: the combined histogram (sketch, le counts, count, sum) is the one a single
    process observing both streams builds, whatever the values (boundaries, zeros, duplicates)."""
    bounds = (0.0, 0.001, 0.01, 0.1, 1.0, 10.0)
    workers = [MetricsRegistry(), MetricsRegistry()]
    for reg, values in zip(workers, (left, right), strict=True):
        h = reg.histogram("lat_seconds", "", ("op",), buckets=bounds)
        for v in values:
            h.labels("x").observe(v)
        h.labels("x").note(0.5)  # a timer's pending note travels too
    one = MetricsRegistry()
    h1 = one.histogram("lat_seconds", "", ("op",), buckets=bounds)
    for v in [*left, *right, 0.5, 0.5]:
        h1.labels("x").observe(v)
    out = MetricsRegistry()
    for reg in workers:
        load_snapshot(out, snapshot(reg))
    got = out.histogram("lat_seconds", "", ("op",), buckets=bounds).labels("x")
    assert got.sketch() == h1.labels("x").sketch()
    assert got.cumulative()[0] == h1.labels("x").cumulative()[0]


def test_a_reused_pid_does_not_lose_the_earlier_worker_s_counts(tmp_path: Path) -> None:
    """A worker whose pid equals a dead one's: the dead one's snapshot is archived, not overwritten."""
    d = tmp_path / "mp"
    d.mkdir()
    old = MetricsRegistry()
    old.counter("reused_total").inc(7)
    doc = snapshot(old)
    doc["pid"], doc["start"] = os.getpid(), "an earlier process"
    (d / f"live-{os.getpid()}.json").write_text(json.dumps(doc))
    mine = MetricsRegistry()
    mine.counter("reused_total").inc(2)
    mp = MultiProcess(d, mine)
    mp.start()
    try:
        assert mp.combined().counter("reused_total").get() == 9
    finally:
        mp.close()


@contextlib.contextmanager
def _talking_worker(script: str, directory: Path) -> Iterator[subprocess.Popen[str]]:
    """``script`` in its own process (argv[1] = ``directory``), talked to through its stdin and stdout;
    killed at the end if it is still running."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("INFRA_METRICS_MULTIPROC_DIR", None)
    argv = [sys.executable, "-c", script, str(directory)]
    with subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdin is not None
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


DYING_WORKER = """
import sys
from infra.metrics import MetricsRegistry
from infra.metrics.multiprocess import MultiProcess
reg = MetricsRegistry()
mp = MultiProcess(sys.argv[1], reg)
reg.counter("dying_total").inc(10)
mp.publish()
print("published", flush=True)
sys.stdin.readline()
reg.counter("dying_total").inc(10)
mp.close()  # its last snapshot, as at exit
"""


def test_a_worker_writing_its_last_counts_while_another_folds_it_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a recycled gunicorn worker ran into: a scrape reads worker X's file (10), X writes its
    last counts (20) and exits, the scrape finds X dead and folds what it read. The fold must not keep 10
    and delete the file holding 20: X's write waits for the scrape's lock, so X is still alive when the
    scrape looks, and the next scrape folds 20."""
    from infra.metrics import multiprocess as mpmod

    d = tmp_path / "mp"
    with _talking_worker(DYING_WORKER, d) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "published"
        asked: list[int] = []

        def alive(pid: int, start: str | None) -> bool:
            # Between reading X's file and judging X, let X write its last counts and exit if it can.
            if pid == proc.pid and not asked:
                asked.append(pid)
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=3)
            return proc.poll() is None if pid == proc.pid else False

        monkeypatch.setattr(mpmod, "_alive", alive)
        scraper = MultiProcess(d, MetricsRegistry())
        first = scraper.combined().counter("dying_total").get()
        assert asked == [proc.pid]
        assert first in (10, 20)
        assert proc.wait(timeout=60) == 0
        assert scraper.combined().counter("dying_total").get() == 20
        assert scraper.combined().counter("dying_total").get() == 20  # folded once, not twice


LAGGING_WORKER = """
import json, sys
from infra.metrics import MetricsRegistry
from infra.metrics import multiprocess
from infra.metrics.multiprocess import MultiProcess
multiprocess.PUBLISH_INTERVAL = 3600  # its publishing thread stays quiet: it writes when told
reg = MetricsRegistry()
mp = MultiProcess(sys.argv[1], reg)
mp.start()
reg.counter("served_total").inc(5)
mp.publish()
reg.counter("served_total").inc(5)    # counted, not yet published
print(int(mp.combined().counter("served_total").get()), flush=True)  # a scrape this worker answers
sys.stdin.readline()
"""


def test_a_scrape_never_shows_less_than_the_scrape_before_it_from_another_worker(tmp_path: Path) -> None:
    """Worker Y answers a scrape with 10 (5 of them not yet in its file); the next scrape, answered by
    another worker, must not show 5: a worker answering a scrape publishes what it shows first."""
    d = tmp_path / "mp"
    with _talking_worker(LAGGING_WORKER, d) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "10"
        other = MultiProcess(d, MetricsRegistry())
        assert other.combined().counter("served_total").get() == 10
        proc.stdin.write("done\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0


def test_a_process_serving_a_fleet_shows_every_part_s_rows_without_having_made_their_calls(
    tmp_path: Path,
) -> None:
    """A worker made HTTP calls and cache lookups; `metrics serve` beside it never imported either, yet
    its get_stats() has the HTTP row and the cache section (it imports the parts' declarations)."""
    worker = (
        "import sys\n"
        "import infra.cache.observability\n"
        "from infra.metrics import get_metrics\n"
        "from infra.metrics.multiprocess import enable\n"
        "mp = enable(sys.argv[1])\n"
        "r = get_metrics()\n"
        "r.histogram('infra_http_request_duration_seconds', '', ('origin', 'method', 'code'))"
        ".labels('http://127.0.0.1:1', 'GET', '5xx').observe(0.01)\n"
        "r.counter('infra_cache_hits_total', '', ('namespace',)).labels('ns').inc(2)\n"
        "mp.close()\n"
    )
    server = (
        "import json, sys\n"
        "import infra.server._common\n"
        "from infra.metrics import get_metrics\n"
        "print(json.dumps(get_metrics().get_stats()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("INFRA_METRICS_MULTIPROC_DIR", None)
    mp_dir = tmp_path / "mp"
    subprocess.run([sys.executable, "-c", worker, str(mp_dir)], env=env, check=True, timeout=60)
    env["INFRA_METRICS_MULTIPROC_DIR"] = str(mp_dir)
    out = subprocess.run(
        [sys.executable, "-c", server], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    stats = json.loads(out.stdout)
    assert stats["http GET http://127.0.0.1:1"]["errors"] == 1
    assert stats["cache"]["ns"]["hits"] == 2
