"""HTTP/2 servers for the tests, on 127.0.0.1, each in its own thread and event loop.

* ``HypercornH2C``: hypercorn serving a tiny ASGI app (or the one given); clients speak h2c with prior
  knowledge.
* ``Holding``: an ASGI app that holds each request until as many are in flight at once as it asks for,
  and records the most it held and the connections they came on.
* ``RotatingH2Server``: a bare h2 (python-hyper) server that, like nginx's ``keepalive_requests``, answers
  ``rotate_every`` streams on a connection, then sends GOAWAY (NO_ERROR, last_stream_id = the last stream
  it answered) and closes; streams the client opened past that are left unprocessed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import threading
from typing import Any


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def read_body(receive: Any) -> bytes:
    """An ASGI request's whole body."""
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


async def _asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    delay = float(
        dict(p.split("=") for p in scope["query_string"].decode().split("&") if "=" in p).get("delay", 0)
    )
    if delay:
        await asyncio.sleep(delay)
    payload = f"{scope['http_version']} {scope['method']} {len(body)}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": payload})


class Holding:
    """ASGI app: a request to ``/hold?n=N`` waits until N requests are in flight at the server at once (or
    ``patience`` seconds pass), then answers 200; one to ``/park`` waits until the test sets ``released``.
    ``peak``: the most in flight at once; ``ports``: the client ports seen (one per connection)."""

    def __init__(self, patience: float = 3.0) -> None:
        self.patience = patience
        self.released = threading.Event()
        self.inflight = 0
        self.peak = 0
        self.ports: set[int] = set()
        self.full: asyncio.Event | None = None

    def reset(self) -> None:
        self.peak, self.ports = 0, set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_body(receive)
        query = dict(p.split("=") for p in scope["query_string"].decode().split("&") if "=" in p)
        want = int(query.get("n", 1))
        self.ports.add(scope["client"][1])
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        if scope["path"] == "/park":
            while not self.released.is_set():  # set from the test's thread
                await asyncio.sleep(0.005)
            want = 0
        if self.full is None:
            self.full = asyncio.Event()
        full = self.full
        if self.inflight >= want:
            full.set()
        try:
            await asyncio.wait_for(full.wait(), self.patience)
        except TimeoutError:
            pass  # the client never had that many in flight: answer anyway, ``peak`` tells
        finally:
            self.inflight -= 1
            if self.inflight == 0:
                self.full = None
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"held"})


def threaded_gets(client: Any, url: str, threads: int) -> list[int]:
    """One GET of ``url`` from each of ``threads`` threads sharing a sync ``client``: the statuses."""
    statuses: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        r = client.get(url)
        with lock:
            statuses.append(r.status)

    started = [threading.Thread(target=call) for _ in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join(30)
    return statuses


def self_signed_cert(directory: str) -> tuple[str, str, str]:
    """A throwaway private CA and a certificate it signed for 127.0.0.1 (IP SAN), valid one day:
    (certfile, keyfile, cafile). A CA and a leaf, as real deployments have: rustls (the pyreqwest backend)
    rejects a CA certificate presented as the server's own (CaUsedAsEndEntity), as the WebPKI rules say."""
    import datetime
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "perf-infra test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .sign(ca_key, hashes.SHA256())
    )
    certfile, keyfile = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    cafile = os.path.join(directory, "ca.pem")
    with open(certfile, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(cafile, "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(keyfile, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return certfile, keyfile, cafile


class HypercornH2C:
    """``with HypercornH2C() as srv: srv.url``: hypercorn on 127.0.0.1, HTTP/2 over cleartext, or over TLS
    (ALPN h2, then http/1.1) when given a certificate; ``alpn``: the protocols it offers over TLS
    (``["http/1.1"]``: a server that declines HTTP/2, answering a client that offered h2 over HTTP/1.1)."""

    def __init__(
        self,
        certfile: str | None = None,
        keyfile: str | None = None,
        app: Any = None,
        alpn: list[str] | None = None,
    ) -> None:
        self.certfile = certfile
        self.keyfile = keyfile
        self.app = app or _asgi_app
        self.alpn = alpn

    def __enter__(self) -> HypercornH2C:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        config = Config()
        config.bind = [f"fd://{self._sock.fileno()}"]
        config.accesslog = None
        config.errorlog = None
        if self.certfile:
            config.certfile = self.certfile
            config.keyfile = self.keyfile
        if self.alpn is not None:
            config.alpn_protocols = self.alpn
        self._lt = _LoopThread()
        self._stop: asyncio.Event | None = None

        async def make_event() -> asyncio.Event:
            return asyncio.Event()

        self._stop = self._lt.run(make_event())
        stop = self._stop
        self._task = asyncio.run_coroutine_threadsafe(
            serve(self.app, config, shutdown_trigger=stop.wait),
            self._lt.loop,  # type: ignore[arg-type]
        )
        # wait until it accepts
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                import time

                time.sleep(0.05)
        return self

    @property
    def url(self) -> str:
        return f"{'https' if self.certfile else 'http'}://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._lt.loop.call_soon_threadsafe(self._stop.set)
        with contextlib.suppress(Exception):
            self._task.result(10)
        self._lt.stop()
        with contextlib.suppress(OSError):  # hypercorn closed the fd it was handed
            self._sock.close()


class _RotatingProtocol(asyncio.Protocol):
    def __init__(self, server: RotatingH2Server) -> None:
        import h2.config
        import h2.connection

        self.server = server
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.transport: Any = None
        self.answered = 0
        self.closed = False
        self.bodies: dict[int, int] = {}
        self.methods: dict[int, str] = {}
        self.data: dict[int, bytes] = {}

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.server.connections += 1
        self.server.live.add(self)
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        import h2.events
        import h2.exceptions

        if self.closed:
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.transport.close()
            return
        last = 0
        unanswered = 0
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.bodies[event.stream_id] = 0
                self.methods[event.stream_id] = dict(event.headers).get(":method", "?")
            elif isinstance(event, h2.events.DataReceived):
                self.bodies[event.stream_id] = self.bodies.get(event.stream_id, 0) + len(event.data)
                self.data[event.stream_id] = self.data.get(event.stream_id, b"") + event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                if self.answered >= self.server.rotate_every:
                    self.server.unprocessed += 1  # past the limit: never answered, never processed
                    unanswered += 1
                    continue
                self.answered += 1
                self.server.processed += 1
                self.server.by_method[self.methods.get(event.stream_id, "?")] += 1
                self.server.bodies_run[self.data.get(event.stream_id, b"")] += 1
                last = event.stream_id
                body = b"ok"
                self.conn.send_headers(
                    event.stream_id, [(":status", "200"), ("content-length", str(len(body)))]
                )
                self.conn.send_data(event.stream_id, body, end_stream=True)
        if self.server.no_goaway and not unanswered:  # it never rotates: it dies (below) or answers
            self.transport.write(self.conn.data_to_send())
            return
        if self.server.no_goaway and not self.closed:
            # a server dying mid-flight (killed, crashed): once a request past the limit arrives, the
            # answers so far, then no GOAWAY: the socket is reset (RST), or its sending side closed (FIN)
            # while what the client still sends is read and dropped (no RST for it to see: "close"
            # fails the client's streams with "Server disconnected" alone)
            self.closed = True
            self.server.rotations += 1
            self.transport.write(self.conn.data_to_send())
            if self.server.no_goaway == "reset":
                self.transport.abort()
            else:
                self.transport.write_eof()
            return
        if self.answered >= self.server.rotate_every and not self.closed and self.server.goaway_first:
            # nginx's order at keepalive_requests: the GOAWAY goes out while the streams it covers are
            # still being answered, so their answers reach the client after it (h2 itself refuses to send
            # after close_connection: the answers are taken first and written behind the GOAWAY)
            self.closed = True
            self.server.rotations += 1
            answers = self.conn.data_to_send()
            self.conn.close_connection(last_stream_id=last)
            self.transport.write(self.conn.data_to_send() + answers)
            self.transport.close()
            return
        if self.answered >= self.server.rotate_every and not self.closed:
            self.closed = True
            self.server.rotations += 1
            self.conn.close_connection(last_stream_id=last)
            self.transport.write(self.conn.data_to_send())
            self.transport.close()
            return
        self.transport.write(self.conn.data_to_send())

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.server.live.discard(self)


class RotatingH2Server:
    """h2c server answering ``rotate_every`` streams per connection, then GOAWAY + close; with
    ``goaway_first`` the GOAWAY reaches the client before the answers it covers (as nginx sends it); with
    ``no_goaway`` ("close" / "reset") each connection dies instead, with no GOAWAY: once a request past
    ``rotate_every`` answers arrives it sends FIN (reading on) or is reset (RST), the requests still open
    unanswered (a server killed mid-flight; ``rotate_every=0``: every connection dies at its first
    request)."""

    def __init__(self, rotate_every: int = 1000, goaway_first: bool = False, no_goaway: str = "") -> None:
        self.rotate_every = rotate_every
        self.goaway_first = goaway_first
        self.no_goaway = no_goaway
        self.connections = 0
        self.rotations = 0
        self.processed = 0
        self.unprocessed = 0
        self.by_method: collections.Counter[str] = collections.Counter()
        self.bodies_run: collections.Counter[bytes] = collections.Counter()
        # Connections still open: closed at exit, since a native client may keep its idle ones past the
        # test (a transport left open when the loop stops warns "unclosed transport" inside a later test).
        self.live: set[_RotatingProtocol] = set()

    def __enter__(self) -> RotatingH2Server:
        self._lt = _LoopThread()

        async def start() -> Any:
            return await self._lt.loop.create_server(lambda: _RotatingProtocol(self), "127.0.0.1", 0)

        self._server = self._lt.run(start())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            for proto in list(self.live):
                proto.transport.close()
            for _ in range(3):  # a closed transport's connection_lost runs a loop turn later
                await asyncio.sleep(0)

        self._lt.run(stop())
        self._lt.stop()
