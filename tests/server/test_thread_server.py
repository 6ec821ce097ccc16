"""serve_metrics: loopback by default, bearer token enforced, content negotiated, port released."""

from __future__ import annotations

import inspect
import json
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from infra.metrics import MetricsRegistry
from infra.metrics.exposition import CONTENT_TYPE_JSON, CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT
from infra.server import MetricsServer, serve_metrics, serve_metrics_from_config


def _get(
    url: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_binds_loopback_by_default() -> None:
    assert inspect.signature(serve_metrics).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(serve_metrics).parameters["port"].default == 9464
    with serve_metrics(port=0) as srv:
        assert srv.host == "127.0.0.1"
        assert srv.bound_address[0] == "127.0.0.1"
        assert srv.url == f"http://127.0.0.1:{srv.port}/metrics"


def test_default_scrape_is_prometheus_text_that_parses(registry: MetricsRegistry) -> None:
    with serve_metrics(port=0, registry=registry) as srv:
        status, headers, body = _get(srv.url)
    assert status == 200 and headers["Content-Type"] == CONTENT_TYPE_TEXT
    fams = {f.name: f for f in parse_text(body.decode())}
    assert fams["infra_cache_hits"].samples[0].value == 4


def test_openmetrics_by_accept_and_json_by_query_or_accept(registry: MetricsRegistry) -> None:
    with serve_metrics(port=0, registry=registry) as srv:
        status, headers, body = _get(srv.url, {"Accept": "application/openmetrics-text; version=1.0.0"})
        assert status == 200 and headers["Content-Type"] == CONTENT_TYPE_OPENMETRICS
        assert {f.name for f in parse_openmetrics(body.decode())} >= {"infra_test_latency_seconds"}
        for url, hdrs in ((srv.url + "?format=json", {}), (srv.url, {"Accept": "application/json"})):
            status, headers, body = _get(url, hdrs)
            assert status == 200 and headers["Content-Type"] == CONTENT_TYPE_JSON
            assert json.loads(body)["stats"]["cache"]["inference"]["hits"] == 4
        status, _, body = _get(srv.url + "?format=xml")
        assert status == 400 and b"unknown format 'xml'" in body
        assert _get(f"http://127.0.0.1:{srv.port}/other")[0] == 404
        status, headers, body = _get(srv.url, method="HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


def test_bearer_token_is_enforced_when_set(registry: MetricsRegistry) -> None:
    with serve_metrics(port=0, token="s3cret", registry=registry) as srv:
        status, headers, body = _get(srv.url)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert b"infra_" not in body
        assert _get(srv.url, {"Authorization": "Bearer wrong"})[0] == 401
        assert _get(srv.url, {"Authorization": "Basic czNjcmV0"})[0] == 401
        status, _, body = _get(srv.url, {"Authorization": "Bearer s3cret"})
        assert status == 200 and b"infra_cache_hits_total" in body


def test_close_releases_the_port() -> None:
    srv = serve_metrics(port=0)
    port = srv.port
    srv.close()
    srv.close()  # idempotent
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_bad_arguments_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"port must be in 0\.\.65535"):
        serve_metrics(port=70000)
    with pytest.raises(ValueError, match="token must be a non-empty string"):
        serve_metrics(port=0, token="")


def test_from_config_reads_host_port_and_the_token_from_the_named_env_var(
    monkeypatch: pytest.MonkeyPatch, registry: MetricsRegistry
) -> None:
    from infra.config import MetricsConfig

    section = MetricsConfig(host="127.0.0.1", port=0, token_env="INFRA_TEST_METRICS_TOKEN")
    monkeypatch.setenv("INFRA_TEST_METRICS_TOKEN", "from-env")
    srv: MetricsServer = serve_metrics_from_config(section, registry=registry)
    with srv:
        assert _get(srv.url)[0] == 401
        assert _get(srv.url, {"Authorization": "Bearer from-env"})[0] == 200


def test_a_taken_port_raises_oserror_naming_the_address() -> None:
    import errno

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot serve /metrics on 127.0.0.1:{port}") as info:
            serve_metrics(port=port)
        assert info.value.errno == errno.EADDRINUSE


def test_gzip_when_asked_and_the_body_is_large(registry: MetricsRegistry) -> None:
    import gzip

    with serve_metrics(port=0, registry=registry) as srv:
        status, headers, body = _get(srv.url, {"Accept-Encoding": "gzip"})
        assert status == 200 and headers["Content-Encoding"] == "gzip"
        text = gzip.decompress(body).decode()
        assert {f.name for f in parse_text(text)} >= {"infra_test_latency_seconds"}
        assert len(body) < len(text.encode())
        _, headers, _ = _get(srv.url, {"Accept-Encoding": "gzip;q=0, identity"})
        assert "Content-Encoding" not in headers


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, False), ("", False), ("gzip", True), ("br, gzip;q=0.5", True), ("gzip;q=0", False),
     ("*", True), ("identity", False), ("deflate, GZIP", True)],
)  # fmt: skip
def test_accept_encoding_table(header: str | None, expected: bool) -> None:
    from infra.server._common import accepts_gzip

    assert accepts_gzip(header) is expected


def _wait_for(predicate, what) -> None:
    import time

    for _ in range(1000):  # 10 s at most: ordered by what the server shows, not by a sleep
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what()}")


def test_threads_stay_bounded_under_200_half_open_connections(registry: MetricsRegistry) -> None:
    """200 connections that never finish a request (100 silent, 100 stopped mid-head) cost no thread each:
    the server runs on a fixed handful (the stdlib server started one per connection: 202), and a real
    scrape still gets its answer meanwhile."""
    import threading

    from infra.server._thread import WORKERS

    before = threading.active_count()
    with serve_metrics(port=0, registry=registry) as srv:
        idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(200)]
        try:
            for s in idle[:100]:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # no blank line: the head never ends
            # accepted in order: once this scrape is answered, all 200 are held by the server
            assert _get(srv.url)[0] == 200
            # serve loop, watcher, workers; the total may also move by a few threads other parts of a
            # loaded test run start or end meanwhile (a history sampler, a cache's maintenance thread),
            # while a thread per connection would add 200
            ours = [
                t
                for t in threading.enumerate()
                if t.name.startswith(("infra-metrics-w", f"infra-metrics-{srv.port}"))
            ]
            assert len(ours) <= 2 + WORKERS, [t.name for t in ours]
            assert threading.active_count() - before <= 2 + WORKERS + 10
            assert _get(srv.url)[0] == 200
        finally:
            for s in idle:
                s.close()


def test_aborted_scrapes_are_quiet(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Clients that hang up mid-response (a reset after the first bytes of an 8 MB body, more than the socket
    buffers hold) are counted and closed without a word: no traceback on stderr (the stdlib server printed
    ~25 lines each), no warning."""
    import struct

    reg = MetricsRegistry()
    for name in ("a", "b", "c"):  # 3 x 3000 series (the per-metric cap): 8 MB of text
        h = reg.histogram(f"infra_test_{name}_seconds", "Test latency.", ("op",))
        for i in range(3000):
            h.labels(f"op{i}").observe(0.001 * (i % 100 + 1))
    with caplog.at_level("DEBUG", logger="infra.server"), serve_metrics(port=0, registry=reg) as srv:
        for _ in range(3):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.settimeout(10)
                s.connect(("127.0.0.1", srv.port))
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                assert s.recv(12).startswith(b"HTTP/1.1 200")
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        _wait_for(lambda: srv.aborted == 3, lambda: f"3 aborted scrapes (saw {srv.aborted})")
        assert _get(srv.url, {"Accept-Encoding": "gzip"})[0] == 200  # and it still serves
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error" not in err, err[:2000]
    assert not [r for r in caplog.records if r.levelno >= 30]


def test_keep_alive_connections_are_reused_and_idle_ones_cost_no_thread(registry: MetricsRegistry) -> None:
    """Prometheus keeps its connection between scrapes: three requests on one connection are answered in
    turn (the connection goes back to the watcher in between)."""
    import http.client

    with serve_metrics(port=0, registry=registry) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        try:
            for _ in range(3):
                conn.request("GET", "/metrics")
                resp = conn.getresponse()
                assert resp.status == 200 and b"infra_cache_hits_total" in resp.read()
            assert conn.sock is not None  # the same socket all along
        finally:
            conn.close()
