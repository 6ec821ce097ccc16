"""A lock for httpcore's sync HTTP/2 connection: PerfClient's threads share one, and h2 is not thread-safe.

httpcore's sync ``HTTP2Connection`` lets every thread with a stream on the connection drive its one
``h2.H2Connection``: it locks the socket reads and writes, not the h2 state between them. h2 is plain
Python, so a thread switch can land inside any of its calls, and on a loaded box (2 cores, the suite
running) one did, 2 runs in 20 of tests/http/test_http2.py's rotation test:

* two threads took the same stream id: ``get_next_available_stream_id`` is the highest id opened + 2 and
  counts a stream only once its HEADERS are queued, so a thread switch between the two gave both threads
  stream 301. The second HEADERS on it is refused ("Invalid input StreamInputs.SEND_HEADERS in state 5",
  HALF_CLOSED_LOCAL after a GET; "pseudo-header in trailer" after a POST still sending its body: h2 takes
  them as trailers), and the first stream to finish deletes the other's event list (``KeyError(301)``);
* the HPACK encoder's dynamic table (a deque) was walked by one thread's ``send_headers`` while another's
  added to it ("deque mutated during iteration"); worse, interleaved encodings can leave the server's
  table out of step with ours, and the server then decodes other headers than those we meant;
* ``data_to_send`` takes h2's outbound buffer and empties it in two steps, so frames queued by another
  thread between the two are dropped; a reader's ``receive_data`` changes the streams and windows that
  a sender reads meanwhile.

So each sync HTTP/2 connection gets one lock around every call into its h2 state (``_LockedH2``), and
opening a stream holds it from choosing the id until that stream's HEADERS and window are queued, so ids go
out in order and once each, and no other thread flushes the HEADERS before the stream is set up. The lock
covers h2's bookkeeping only, never a socket read or write: those stay under httpcore's own read and write
locks (taken first, so the order is always theirs, then ours). A body chunk's window check and send are one
step under it too (``_send_stream_data``), or two streams could both spend the connection's last window. The
async client needs none of this: it has one thread, and httpcore's async connection never awaits between
those steps.

The seam: the transport's httpcore pool (``transport_pool``) becomes ``_Pool``, whose connections
(``_Connection``) hand their HTTP/2 connection to ``_guard`` as httpcore creates it, the one place
every sync HTTP/2 connection passes through. httpcore's code runs unchanged.
"""

from __future__ import annotations

import threading
from typing import Any

import h2.connection
import httpcore
from httpcore._sync.connection import HTTPConnection
from httpcore._sync.http2 import HTTP2Connection

from infra.http._h2_goaway import GoawayH2, answered_meanwhile

__all__ = ["guard_sync_pool"]

# The h2 calls httpcore's sync connection (and our stream reset, ``_routing._reset``) makes on its state.
_LOCKED = (
    "initiate_connection",
    "send_data",
    "end_stream",
    "acknowledge_received_data",
    "reset_stream",
    "close_connection",
    "receive_data",
    "data_to_send",
    "local_flow_control_window",
    "update_settings",
    "ping",
)


class _LockedH2(GoawayH2):
    """h2's connection with each call under ``_perf_lock`` (an RLock: h2's calls call each other), keeping
    a server's GOAWAY as the async client's does (``GoawayH2``).

    Set on an existing H2Connection as its class (``_guard``), so it has no ``__init__`` of its own."""

    _perf_lock: threading.RLock
    _perf_opening: tuple[int, int] | None  # (thread, stream id) holding the lock to open that stream

    def get_next_available_stream_id(self) -> int:
        """The next stream id, with the lock kept until the stream is open (``opened``) or given up
        (``abandon``): h2 counts the id as taken only once its HEADERS are queued, and ids must be opened
        in increasing order."""
        self._perf_lock.acquire()
        try:
            stream_id = super().get_next_available_stream_id()
        except BaseException:
            self._perf_lock.release()
            raise
        self._perf_opening = (threading.get_ident(), stream_id)
        return stream_id

    def send_headers(self, stream_id: int, *args: Any, **kwargs: Any) -> None:
        with self._perf_lock:
            try:
                super().send_headers(stream_id, *args, **kwargs)
            except BaseException:
                self.abandon(stream_id)  # refused (the connection closed meanwhile): the next id may go
                raise

    def increment_flow_control_window(self, increment: int, stream_id: int | None = None) -> None:
        """httpcore opens the stream's window right after its HEADERS: the opening ends here. Until then
        no other thread may flush the HEADERS (``data_to_send``): a fast server's answer could close the
        stream, h2 forget it, and this call raise KeyError (seen at 50 us thread switches)."""
        with self._perf_lock:
            try:
                super().increment_flow_control_window(increment, stream_id)
            finally:
                if stream_id is not None:
                    self.abandon(stream_id)

    def abandon(self, stream_id: int) -> None:
        """Give the lock back if this thread holds it to open ``stream_id``: the stream is open, or its
        request failed before it was (httpcore then closes the stream: ``_Guarded._response_closed``)."""
        if self._perf_opening == (threading.get_ident(), stream_id):
            self._perf_opening = None
            self._perf_lock.release()


def _locked(name: str) -> Any:
    method = getattr(GoawayH2, name)  # receive_data is GoawayH2's own

    def call(self: _LockedH2, *args: Any, **kwargs: Any) -> Any:
        with self._perf_lock:
            return method(self, *args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = method.__doc__
    return call


for _name in _LOCKED:
    setattr(_LockedH2, _name, _locked(_name))


class _Guarded(HTTP2Connection):
    """httpcore's sync HTTP/2 connection with its h2 state locked (set as its class by ``_guard``)."""

    _h2_state: _LockedH2

    def _send_stream_data(self, request: Any, stream_id: int, data: bytes) -> None:
        """httpcore's, with the window read and the send as one step: between them another stream could
        spend the connection's window, and h2 refuses a send above it (FlowControlError)."""
        h2_state = self._h2_state
        while data:
            self._wait_for_outgoing_flow(request, stream_id)  # reads the network until there is window
            with h2_state._perf_lock:
                flow = min(h2_state.local_flow_control_window(stream_id), h2_state.max_outbound_frame_size)
                if flow <= 0:
                    continue  # spent by another stream meanwhile: wait again
                chunk, data = data[:flow], data[flow:]
                h2_state.send_data(stream_id, chunk)
            self._write_outgoing_data(request)

    def _receive_events(self, request: Any, stream_id: int | None = None) -> None:
        """httpcore's, with an answer that came with the server's GOAWAY taken (``answered_meanwhile``)."""
        try:
            super()._receive_events(request, stream_id)
        except httpcore.RemoteProtocolError as exc:
            if not answered_meanwhile(exc, stream_id, self._connection_terminated, self._events):
                raise

    def _response_closed(self, stream_id: int) -> None:
        self._h2_state.abandon(stream_id)  # failed between taking its id and sending its HEADERS
        super()._response_closed(stream_id)


def _guard(conn: Any) -> Any:
    """Lock a new HTTP2Connection's h2 state, before any thread uses it; other connections unchanged."""
    if type(conn) is HTTP2Connection and type(conn._h2_state) is h2.connection.H2Connection:
        state: Any = conn._h2_state
        state._perf_lock = threading.RLock()
        state._perf_opening = None
        state._perf_goaway = False
        state._perf_held = []
        state.__class__ = _LockedH2
        conn.__class__ = _Guarded
    return conn


class _Connection(HTTPConnection):
    """httpcore's connection (TCP/TLS, then HTTP/1.1 or HTTP/2) with ``_guard`` on what it creates: httpcore
    assigns ``self._connection`` once, under its request lock, before any request is sent on it."""

    @property
    def _connection(self) -> Any:
        return self.__dict__.get("_connection")

    @_connection.setter
    def _connection(self, conn: Any) -> None:
        self.__dict__["_connection"] = _guard(conn)


class _Pool(httpcore.ConnectionPool):
    """httpcore's pool making ``_Connection``s (no proxy: PerfClient's transports have none)."""

    def create_connection(self, origin: httpcore.Origin) -> Any:
        conn = super().create_connection(origin)
        if type(conn) is HTTPConnection:
            conn.__class__ = _Connection
        return conn


def guard_sync_pool(pool: Any) -> None:
    """Make an httpx ``HTTPTransport``'s pool lock the h2 state of each HTTP/2 connection it opens (a pool
    of another type, a proxy's, is left alone). ``pool``: ``_routing.transport_pool``'s."""
    if type(pool) is httpcore.ConnectionPool:
        pool.__class__ = _Pool
