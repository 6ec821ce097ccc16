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
        assert srv._server.socket.getsockname()[0] == "127.0.0.1"
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
    class Section:
        host = "127.0.0.1"
        port = 0
        token_env = "INFRA_TEST_METRICS_TOKEN"

    monkeypatch.setenv("INFRA_TEST_METRICS_TOKEN", "from-env")
    srv: MetricsServer = serve_metrics_from_config(Section(), registry=registry)
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
