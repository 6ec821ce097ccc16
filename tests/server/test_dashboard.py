"""/dashboard: the history ring's bounds, interval quantiles, and the page and data on all three servers."""

from __future__ import annotations

import gc
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from starlette.applications import Starlette
from starlette.routing import Mount

from infra.metrics import MetricsRegistry
from infra.metrics.history import MetricsHistory
from infra.server import (
    make_dashboard_aiohttp_handler,
    make_dashboard_asgi_app,
    make_dashboard_wsgi_app,
    serve_metrics,
)
from infra.server._dashboard_source import ColumnSampler
from infra.server.dashboard import history_for

# -- the ring ---------------------------------------------------------------------------------------


def test_ring_keeps_the_last_capacity_samples_and_a_reader_gets_only_what_is_new() -> None:
    h = MetricsHistory(lambda: {}, interval=1.0, window=5.0)
    assert h.capacity == 5
    for i in range(1, 4):
        h.record({"a": float(i)}, t=float(i))
    page = h.since(0)
    assert (page.seq, page.t, page.columns["a"], page.reset) == (3, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], False)
    h.record({"a": 4.0, "b": 40.0}, t=4.0)
    page = h.since(3)
    assert page.t == [4.0] and page.columns["a"] == [4.0] and page.columns["b"] == [40.0]
    assert math.isnan(h.since(0).columns["b"][0])  # a column that appeared later reads NaN before
    for i in range(5, 12):
        h.record({"a": float(i)}, t=float(i))
    page = h.since(3)  # the reader fell behind the ring: told to start over, gets what is held
    assert page.reset and page.t == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert all(math.isnan(v) for v in page.columns["b"])  # b stopped being reported
    assert h.since(11).t == [] and not h.since(11).reset


def test_ring_memory_is_fixed_by_capacity_and_max_columns_whatever_is_reported() -> None:
    h = MetricsHistory(lambda: {}, interval=2.0, window=3600.0, max_columns=10)
    for i in range(5000):
        h.record({f"c{j}": float(i) for j in range(i % 25)}, t=float(i))
    assert len(h.since(0).columns) == 10 and h.dropped_columns > 0
    assert h.nbytes() == 11 * 1800 * 8 == h.max_nbytes()


def test_a_full_ring_makes_room_for_a_new_series_by_dropping_the_one_flat_the_longest() -> None:
    """A long-lived process keeps charting what it does now: once ``max_columns`` are held, a new series
    replaces the one whose value stopped moving first; only when all moved in this sample is it dropped."""
    h = MetricsHistory(lambda: {}, interval=1.0, window=100.0, max_columns=3)
    h.record({"old": 1.0, "busy": 1.0, "idle": 5.0}, t=0.0)
    h.record({"old": 1.0, "busy": 2.0, "idle": 5.0}, t=1.0)  # old and idle flat since sample 0
    h.record({"old": 1.0, "busy": 3.0, "idle": 6.0}, t=2.0)  # idle moved: old is the flattest
    h.record({"old": 1.0, "busy": 4.0, "idle": 6.0, "new": 7.0}, t=3.0)
    cols = h.since(0).columns
    assert set(cols) == {"busy", "idle", "new"} and cols["new"][-1] == 7.0
    assert h.evicted_columns == 1 and h.dropped_columns == 0
    # every held column moves in the sample that brings a fourth: nothing is evictable, it is dropped
    h.record({"busy": 5.0, "idle": 7.0, "new": 8.0, "late": 1.0}, t=4.0)
    assert "late" not in h.since(0).columns and h.dropped_columns == 1
    # the evicted series, still reported but still flat, stays out (no thrashing among flat series);
    # NaN (an interval with no calls) to NaN is flat too
    for t in (5.0, 6.0):
        h.record({"old": 1.0, "busy": t, "idle": t, "new": math.nan}, t=t)
    assert "old" not in h.since(0).columns and h.evicted_columns == 1
    h.record({"old": 2.0, "busy": 8.0, "idle": 8.0, "new": math.nan}, t=7.0)  # old moves: back in
    cols = h.since(0).columns
    assert cols["old"][-1] == 2.0 and "new" not in cols and h.evicted_columns == 2


def test_ring_samples_on_its_thread_survives_a_failing_sample_and_stops() -> None:
    calls = 0
    third = threading.Event()

    def sample() -> dict[str, float]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("boom")
        if calls >= 3:
            third.set()
        return {"n": float(calls)}

    h = MetricsHistory(sample, interval=0.01, window=1.0).start()
    assert h.start() is h  # idempotent
    assert third.wait(10)
    h.stop()
    assert not h.running and h.failed_samples == 1
    assert h.since(0).columns["n"][:2] == [1.0, 3.0]


def test_the_ring_of_a_registry_that_is_gone_stops_sampling() -> None:
    reg = MetricsRegistry()
    history = history_for(reg)
    assert history.running
    del reg
    gc.collect()
    assert history.sample_now() is None
    assert history.join(5)  # its thread ends by itself
    assert not history.running


# -- the adapter ------------------------------------------------------------------------------------


def test_latency_quantiles_are_of_the_calls_in_each_interval_not_since_start() -> None:
    reg = MetricsRegistry()
    op = reg.histogram("infra_operation_duration_seconds", "", ("operation",)).labels("stage1")
    sampler = ColumnSampler(reg)
    for _ in range(900):
        op.observe(0.001)
    first = sampler()
    assert first is not None and first["p50|stage|stage1"] == pytest.approx(1.0, rel=0.01)
    for _ in range(100):
        op.observe(0.200)
    second = sampler()
    assert second is not None
    # since start, p50 is still 1 ms; the interval's calls all took 200 ms
    assert second["p50|stage|stage1"] == pytest.approx(200.0, rel=0.01)
    assert second["p99|stage|stage1"] == pytest.approx(200.0, rel=0.01)
    assert second["calls|stage|stage1"] == 1000
    third = sampler()
    assert third is not None and "p50|stage|stage1" not in third and third["calls|stage|stage1"] == 1000


def test_columns_cover_cache_http_and_ollama_series_by_their_labels() -> None:
    reg = MetricsRegistry()
    reg.counter("infra_cache_hits_total", "", ("namespace",)).labels("inference").inc(3)
    reg.counter("infra_cache_errors_total", "", ("namespace", "reason")).labels("inference", "codec").inc()
    reg.counter("infra_cache_errors_total", "", ("namespace", "reason")).labels("inference", "store").inc()
    h = reg.histogram("infra_http_request_duration_seconds", "", ("origin", "method", "code"))
    h.labels("http://a", "GET", "2xx").observe(0.01)
    h.labels("http://a", "GET", "5xx").observe(0.02)
    o = reg.histogram("infra_ollama_request_duration_seconds", "", ("model", "operation", "cache"))
    o.labels("m", "generate", "hit").observe(0.001)
    o.labels("m", "generate", "miss").observe(1.0)
    reg.gauge("infra_http_breaker_state", "", ("origin",)).labels("http://a").set(2)
    row = ColumnSampler(reg)()
    assert row is not None
    assert row["hits|cache|inference"] == 3 and row["cache_errors|cache|inference"] == 2
    assert row["calls|http|GET http://a"] == 2 and row["errors|http|GET http://a"] == 1
    assert row["calls|llm|generate m"] == 2  # hits and misses of one operation are one series
    assert row["breaker|http|http://a"] == 2


# -- the servers ------------------------------------------------------------------------------------


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def reg() -> MetricsRegistry:
    r = MetricsRegistry()
    r.counter("infra_cache_hits_total", "", ("namespace",)).labels("inference").inc(7)
    r.counter("infra_cache_misses_total", "", ("namespace",)).labels("inference").inc(3)
    return r


def test_thread_server_serves_page_assets_and_data_behind_the_token(reg: MetricsRegistry) -> None:
    with serve_metrics(port=0, token="tok", registry=reg) as srv:
        base = f"http://127.0.0.1:{srv.port}"
        status, headers, body = _get(base + "/dashboard")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        # VS Code's Simple Browser shows the page in a frame: nothing may forbid framing it
        assert (
            "X-Frame-Options" not in headers and "frame-ancestors" not in headers["Content-Security-Policy"]
        )
        assert b'src="/dashboard/static/dashboard.js"' in body and b"http" not in body.split(b"<body")[0]
        for asset, ctype in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
            status, headers, _ = _get(f"{base}/dashboard/static/{asset}")
            assert status == 200 and headers["Content-Type"].startswith(ctype)
        assert _get(base + "/dashboard/static/../../_thread.py")[0] == 404
        assert _get(base + "/dashboard/data")[0] == 401
        assert _get(base + "/dashboard/data?token=wrong")[0] == 401
        assert _get(base + "/dashboard/data?since=x", {"Authorization": "Bearer tok"})[0] == 400
        status, _, body = _get(base + "/dashboard/data?since=0", {"Authorization": "Bearer tok"})
        doc = json.loads(body)
        assert status == 200 and doc["seq"] >= 1 and doc["columns"]["hits|cache|inference"][-1] == 7
        assert doc["epoch"] == history_for(reg).epoch  # a restarted process answers with another
        assert (
            doc["current"]["cache"]["inference"]["hit_rate"]
            == reg.get_stats()["cache"]["inference"]["hit_rate"]
        )
        status, _, body = _get(f"{base}/dashboard/data?since={doc['seq']}&token=tok")
        assert status == 200 and len(json.loads(body)["t"]) <= 1  # only rows taken since
        assert _get(base + "/metrics", {"Authorization": "Bearer tok"})[0] == 200  # /metrics unchanged
        assert _get(base + "/dashboards")[0] == 404


async def test_asgi_app_mounted_in_starlette_serves_the_dashboard_under_its_mount(
    reg: MetricsRegistry,
) -> None:
    app = Starlette(routes=[Mount("/ops/dashboard", make_dashboard_asgi_app(reg, token="tok"))])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as client:
        r = await client.get("/ops/dashboard/")
        assert r.status_code == 200 and 'src="/ops/dashboard/static/dashboard.js"' in r.text
        assert (await client.get("/ops/dashboard/static/dashboard.css")).status_code == 200
        assert (await client.get("/ops/dashboard/data")).status_code == 401
        r = await client.get("/ops/dashboard/data", headers={"Authorization": "Bearer tok"})
        assert r.status_code == 200 and r.json()["current"]["cache"]["inference"]["hits"] == 7
        assert (await client.post("/ops/dashboard/data")).status_code == 405


async def test_aiohttp_handler_serves_the_dashboard(reg: MetricsRegistry) -> None:
    app = web.Application()
    app.router.add_get("/dashboard{tail:.*}", make_dashboard_aiohttp_handler(reg, token="tok"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(base + "/dashboard") as r:
                assert r.status == 200 and 'src="/dashboard/static/dashboard.js"' in await r.text()
            async with s.get(base + "/dashboard/data") as r:
                assert r.status == 401
            async with s.get(base + "/dashboard/data?token=tok") as r:
                doc: dict[str, Any] = await r.json()
                assert r.status == 200 and doc["current"]["cache"]["inference"]["misses"] == 3
    finally:
        await runner.cleanup()


def test_wsgi_app_serves_the_dashboard_under_its_script_name(reg: MetricsRegistry) -> None:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    app = make_dashboard_wsgi_app(reg, token="tok")

    def mounted(environ: dict[str, Any], start_response: Any) -> Any:  # what a dispatcher does
        path = environ["PATH_INFO"]
        if not path.startswith("/dashboard"):
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        environ["SCRIPT_NAME"], environ["PATH_INFO"] = "/dashboard", path[len("/dashboard") :]
        return app(environ, start_response)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    with make_server("127.0.0.1", 0, mounted, handler_class=Quiet) as httpd:
        t = threading.Thread(target=httpd.serve_forever, daemon=True)
        t.start()
        try:
            base = f"http://127.0.0.1:{httpd.server_port}"
            status, _, body = _get(base + "/dashboard")
            assert status == 200 and b'src="/dashboard/static/dashboard.js"' in body
            assert _get(base + "/dashboard/data")[0] == 401
            status, _, body = _get(base + "/dashboard/data", {"Authorization": "Bearer tok"})
            assert status == 200 and json.loads(body)["current"]["cache"]["inference"]["hits"] == 7
        finally:
            httpd.shutdown()


def test_under_several_workers_each_workers_dashboard_shows_the_combined_numbers(tmp_path: Path) -> None:
    """gunicorn, 3 workers: whichever answers /dashboard/data shows every worker's calls and hits."""
    pytest.importorskip("gunicorn")
    here = Path(__file__).resolve().parent
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": f"{here.parents[1]}{os.pathsep}{here}",
        "INFRA_METRICS_MULTIPROC_DIR": str(tmp_path / "mp"),
        "MP_CACHE_PATH": str(tmp_path / "cache.db"),
    }
    log = (tmp_path / "gunicorn.log").open("w")
    cmd = [sys.executable, "-m", "gunicorn", "-w", "3", "-b", f"127.0.0.1:{port}", "mp_dashboard_app:app"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while _get_or_none(base + "/?warmup") is None:
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp_path / "gunicorn.log"
            ).read_text()
            time.sleep(0.1)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(6) as pool:  # 10 keys, so mostly hits; spread over the workers
            pids = set(pool.map(lambda i: _get(f"{base}/?k{i % 10}")[2], range(60)))
        calls = 61  # with the warm-up request
        # Every worker's page converges on the fleet's totals (snapshots publish every 0.5 s, the
        # ring samples every 2 s): poll until several answers in a row show them.
        agreeing = 0
        deadline = time.monotonic() + 60
        doc: dict[str, Any] = {}
        while agreeing < 6:
            assert time.monotonic() < deadline, f"no agreement; last: {doc.get('current')}"
            doc = json.loads(_get(base + "/dashboard/data")[2])
            mp = doc["current"]["cache"].get("mp", {})
            latest = [v for v in doc["columns"].get("calls|stage|mp_work", []) if v is not None]
            # every lookup of every worker (two workers may both miss one key: only the sum is fixed)
            lookups = mp.get("hits", 0) + mp.get("misses", 0)
            ok = lookups == calls and mp.get("hits", 0) >= 40 and latest and latest[-1] == calls
            agreeing = agreeing + 1 if ok else 0
            time.sleep(0.3)
        assert doc["current"]["multiprocess"] is True
        assert len(pids) >= 2, pids  # the requests really were spread over workers
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _get_or_none(url: str) -> bytes | None:
    try:
        return _get(url)[2]
    except OSError:
        return None


async def test_the_process_wide_app_and_handler_are_coroutine_functions_aiohttp_takes_without_warning() -> (
    None
):
    import inspect

    from infra.server import dashboard_aiohttp_handler, dashboard_asgi_app

    assert inspect.iscoroutinefunction(dashboard_aiohttp_handler)
    assert inspect.iscoroutinefunction(dashboard_asgi_app)
    app = web.Application()
    app.router.add_get("/dashboard{tail:.*}", dashboard_aiohttp_handler)  # filterwarnings=error: no warning
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{runner.addresses[0][1]}/dashboard/") as r,
        ):
            assert r.status == 200 and 'src="/dashboard/static/dashboard.js"' in await r.text()
    finally:
        await runner.cleanup()
