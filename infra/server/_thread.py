"""``serve_metrics``: the /metrics endpoint on a stdlib HTTP server in a background thread."""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from ..metrics import MetricsRegistry
from ._common import metrics_response
from .dashboard import dashboard_route, history_for

__all__ = ["MetricsServer", "serve_metrics", "serve_metrics_from_config"]

log = logging.getLogger("infra.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for Prometheus' repeated scrapes
    timeout = 30  # an idle keep-alive connection frees its thread after this
    server: _Server

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        dashboard = path == "/dashboard" or path.startswith("/dashboard/")  # see dashboard.py
        if path not in ("/metrics", "/") and not dashboard:
            self._send(404, [("Content-Type", "text/plain; charset=utf-8")], b"404 Not Found: try /metrics\n")
            return
        try:
            render = dashboard_route(path) if dashboard else metrics_response
            status, headers, body = render(
                self.server.registry,
                accept=self.headers.get("Accept"),
                query=query,
                authorization=self.headers.get("Authorization"),
                token=self.server.token,
                accept_encoding=self.headers.get("Accept-Encoding"),
            )
        except Exception:  # the endpoint must never take the process down; say so once per server
            if not self.server.logged_failure:
                self.server.logged_failure = True
                log.exception("rendering /metrics failed")
            status, headers, body = (
                500,
                [("Content-Type", "text/plain; charset=utf-8")],
                b"500 render failed\n",
            )
        self._send(status, headers, body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes every few seconds would flood stderr; failures are logged above


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], registry: MetricsRegistry | None, token: str | None) -> None:
        self.registry = registry
        self.token = token
        self.logged_failure = False
        super().__init__(addr, _Handler)


class MetricsServer:
    """Handle of a running endpoint: ``.host``, ``.port``, ``.url``, ``.close()``; a context manager."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host: str = server.server_address[0]  # type: ignore[assignment]
        self.port: int = server.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MetricsServer({self.url!r})"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_metrics(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    *,
    registry: MetricsRegistry | None = None,
) -> MetricsServer:
    """Serve /metrics on ``host:port`` from a daemon thread and return its handle.

    Loopback by default. ``token`` requires ``Authorization: Bearer <token>`` (401 otherwise); binding
    to a non-loopback address without one logs a warning. ``port=0`` lets the OS choose (see
    ``.port``). Content: Prometheus text 0.0.4, OpenMetrics by Accept, JSON by ``?format=json``.
    """
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port must be in 0..65535, got {port!r}")
    if token is not None and not token:
        raise ValueError("token must be a non-empty string or None")
    if not _is_loopback(host) and token is None:
        log.warning("serving /metrics on non-loopback %s:%s without a bearer token", host, port)
    try:
        server = _Server((host, int(port)), registry, token)
    except OSError as exc:
        # Keep errno (callers check EADDRINUSE) but say which address, which the bare error doesn't.
        raise OSError(exc.errno, f"cannot serve /metrics on {host}:{port}: {exc.strerror}") from exc
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=f"infra-metrics-{port}", daemon=True
    )
    thread.start()
    history_for(registry)  # the /dashboard charts draw from this ring: sample from the server's start
    return MetricsServer(server, thread)


def serve_metrics_from_config(section: Any, *, registry: MetricsRegistry | None = None) -> MetricsServer:
    """``serve_metrics`` with the ``metrics`` section of PerfConfig (host, port, token from ``token_env``)."""
    token_env = getattr(section, "token_env", None)
    token = os.environ.get(token_env) if token_env else None
    return serve_metrics(
        getattr(section, "host", DEFAULT_HOST),
        getattr(section, "port", DEFAULT_PORT),
        token or None,
        registry=registry,
    )
