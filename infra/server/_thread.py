"""``serve_metrics``: the /metrics endpoint on a stdlib HTTP server in a background thread.

Threads are bounded, whatever the clients do: the stdlib's ThreadingHTTPServer starts a thread per
connection, so 200 connections that never send a full request held 200 threads (each until its 30 s
timeout), and every scrape aborted mid-response printed ~25 lines of traceback. Here one watcher thread
holds every open connection in a selector, costing no thread, and reads what arrives into the
connection's buffer until a complete request head is there; only then does one of ``WORKERS`` threads
answer that one request (from the buffer), and a keep-alive connection goes back to the watcher with
whatever followed the head. Connections idle past their limit are
closed, at most ``MAX_CONNECTIONS`` are held (the oldest goes first), and a client that hangs up
mid-scrape is closed quietly (counted in ``aborted``).
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import logging
import os
import queue
import selectors
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING, Any

from .._closing import Closing
from ..metrics import MetricsRegistry
from ._common import metrics_response
from .dashboard import dashboard_route, history_for

if TYPE_CHECKING:
    from infra.config.sections.metrics import MetricsConfig

__all__ = ["MetricsServer", "serve_metrics", "serve_metrics_from_config"]

log = logging.getLogger("infra.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464


# Threads answering requests (rendering is CPU under the GIL: more would not scrape faster).
WORKERS = 4
# Connections held open at once (idle keep-alive and half-open ones included); past it the oldest is closed.
MAX_CONNECTIONS = 256
# A connection must deliver a complete request head this soon after it opens or its last answer.
HEAD_TIMEOUT = 10.0
# An idle keep-alive connection is closed after this (Prometheus scrapes every 15-60 s and reconnects).
IDLE_TIMEOUT = 75.0
# The request head may be at most this long (the stdlib handler allows 64 KiB per line).
MAX_HEAD = 65536


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for Prometheus' repeated scrapes
    timeout = 10  # seconds one send may block on a client that doesn't read
    server: _Server
    head = b""  # the request head the watcher read (and anything after it), set before __init__ runs
    rest = b""  # what followed this request's head: the start of the next one

    def setup(self) -> None:
        super().setup()
        self.rfile = io.BytesIO(self.head)  # the watcher has read the head already

    def handle(self) -> None:
        """Answer exactly one request; the server then decides what becomes of the connection."""
        self.close_connection = True
        self.handle_one_request()
        self.rest = self.rfile.read()

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


class _Server(HTTPServer):
    """An HTTPServer whose connections wait in a selector, not in threads (see the module docstring)."""

    allow_reuse_address = True
    # The listen backlog (the stdlib's 5 made a burst of connections wait seconds for SYN retransmits).
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], registry: MetricsRegistry | None, token: str | None) -> None:
        self.registry = registry
        self.token = token
        self.logged_failure = False
        self.aborted = 0  # responses the client hung up on
        # connection -> [when it must have sent a whole request head, what it sent so far]
        self._held: dict[socket.socket, list[Any]] = {}
        self._incoming: list[tuple[socket.socket, float, bytes]] = []
        self._lock = threading.Lock()
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._requests: queue.SimpleQueue[tuple[socket.socket, bytes] | None] = queue.SimpleQueue()
        super().__init__(addr, _Handler)  # binds: raises (after server_close) when the port is taken
        self._selector = selectors.DefaultSelector()
        # Wakes the watcher from select() when a connection is handed to it or the server closes.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        # Daemon threads, as the stdlib server's were: an endpoint nobody closed never holds up exit.
        self._threads = [threading.Thread(target=self._watch, name="infra-metrics-watcher", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, name=f"infra-metrics-worker-{i}", daemon=True)
            for i in range(WORKERS)
        ]
        for thread in self._threads:
            thread.start()

    # -- socketserver hooks ------------------------------------------------------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        """A new connection: held by the watcher until it has sent a request head (no thread)."""
        self._hold(request, time.monotonic() + HEAD_TIMEOUT, b"")

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("/metrics connection failed", exc_info=True)  # never a traceback on stderr

    def server_close(self) -> None:
        super().server_close()
        with self._lock:
            self._closing = True
        if not self._threads:  # the bind failed: nothing was started
            return
        self._poke()
        watcher, *workers = self._threads
        watcher.join(timeout=5)
        for _ in workers:
            self._requests.put(None)
        for thread in workers:
            thread.join(timeout=5)
        with self._lock:
            incoming, self._incoming = self._incoming, []
        for sock, _, _ in incoming:
            self.shutdown_request(sock)
        self._wake_r.close()
        self._wake_w.close()

    # -- the watcher -------------------------------------------------------------------------------------

    def _hold(self, sock: socket.socket, limit: float, head: bytes) -> None:
        with self._lock:
            if self._closing:
                closing = True
            else:
                closing = False
                self._incoming.append((sock, limit, head))
        if closing:
            self.shutdown_request(sock)
        else:
            self._poke()

    def _poke(self) -> None:
        with contextlib.suppress(OSError):  # the pipe is full (the watcher will look anyway) or closed
            self._wake_w.send(b"\0")

    def _watch(self) -> None:
        held = self._held
        selector = self._selector
        while True:
            with self._lock:
                closing = self._closing
                incoming, self._incoming = self._incoming, []
            if closing:
                break
            for sock, limit, head in incoming:
                self._start_holding(sock, limit, head)
            now = time.monotonic()
            wait = min((h[0] for h in held.values()), default=now + 1.0) - now
            for key, _ in selector.select(timeout=max(0.0, min(wait, 1.0))):
                fileobj = key.fileobj
                if fileobj is self._wake_r:
                    with contextlib.suppress(OSError):
                        while self._wake_r.recv(4096):
                            pass
                    continue
                assert isinstance(fileobj, socket.socket)
                self._readable(fileobj)
            now = time.monotonic()
            for sock, (limit, _) in list(held.items()):
                if limit <= now:  # half-open past the head timeout, or idle past the keep-alive one
                    self._drop(sock)
        for sock in list(held):
            self._drop(sock)
        selector.close()

    def _start_holding(self, sock: socket.socket, limit: float, head: bytes) -> None:
        held = self._held
        if _head_complete(head):  # a pipelined request already read with the last one
            self._requests.put((sock, head))
            return
        if len(held) >= MAX_CONNECTIONS:
            oldest = min(held, key=lambda s: held[s][0])  # the one closest to timing out anyway
            self._drop(oldest)
        try:
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ)
        except (OSError, ValueError):
            self.shutdown_request(sock)
            return
        held[sock] = [limit, head]

    def _readable(self, sock: socket.socket) -> None:
        entry = self._held[sock]
        try:
            data = sock.recv(MAX_HEAD + 1 - len(entry[1]))
        except BlockingIOError:
            return
        except OSError:
            self._drop(sock)
            return
        if not data:  # the client closed
            self._drop(sock)
            return
        head = entry[1] = entry[1] + data
        if _head_complete(head) or len(head) > MAX_HEAD:
            # A whole head (or more than a head may be: the handler answers 431 / 400): a worker's turn.
            self._selector.unregister(sock)
            del self._held[sock]
            self._requests.put((sock, head))

    def _drop(self, sock: socket.socket) -> None:
        self._held.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        self.shutdown_request(sock)

    # -- a worker ----------------------------------------------------------------------------------------

    def _work(self) -> None:
        while (job := self._requests.get()) is not None:
            self._answer(*job)

    def _answer(self, sock: socket.socket, head: bytes) -> None:
        """Answer the request whose head is ``head``; keep-alive connections go back to the watcher."""
        keep = False
        handler = _Handler.__new__(_Handler)
        handler.head = head
        try:
            sock.setblocking(True)
            handler.__init__(sock, sock.getpeername(), self)  # type: ignore[misc]  # setup, handle, finish
            keep = not handler.close_connection
        except OSError:  # the client hung up mid-answer (an aborted scrape): nothing to report
            with self._lock:
                self.aborted += 1
        except Exception:
            log.debug("/metrics request failed", exc_info=True)
        if keep:
            self._hold(sock, time.monotonic() + IDLE_TIMEOUT, handler.rest)
        else:
            self.shutdown_request(sock)


def _head_complete(head: bytes) -> bool:
    return b"\r\n\r\n" in head or b"\n\n" in head


class MetricsServer(Closing):
    """Handle of a running endpoint: ``.host``, ``.port``, ``.url``, ``.close()``; a context manager."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host: str = server.server_address[0]  # type: ignore[assignment]
        self.port: int = server.server_address[1]

    @property
    def bound_address(self) -> tuple[str, int]:
        """The address the listening socket is bound to, as the operating system reports it."""
        host, port = self._server.socket.getsockname()[:2]
        return host, port

    @property
    def aborted(self) -> int:
        """Responses cut short because the client hung up (closed quietly, never a traceback)."""
        return self._server.aborted

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


def serve_metrics_from_config(
    section: MetricsConfig | None, *, registry: MetricsRegistry | None = None
) -> MetricsServer:
    """``serve_metrics`` with the ``metrics`` section of PerfConfig (host, port, token from ``token_env``)."""
    token_env = getattr(section, "token_env", None)
    token = os.environ.get(token_env) if token_env else None
    return serve_metrics(
        getattr(section, "host", DEFAULT_HOST),
        getattr(section, "port", DEFAULT_PORT),
        token or None,
        registry=registry,
    )
