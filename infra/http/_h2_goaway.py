"""Keep a server's GOAWAY on httpx's HTTP/2 connections: h2 loses it when answers follow it in one read.

A server that rotates its connections (nginx ``keepalive_requests``, hypercorn's max requests) sends
GOAWAY(NO_ERROR, last_stream_id) and then the answers it still owes on streams up to last_stream_id, often
in the same TCP read. h2 moves its connection to CLOSED on the GOAWAY and refuses every later frame
("Invalid input ConnectionInputs.RECV_HEADERS in state ConnectionState.CLOSED": h2 doesn't support a
graceful close, python-hyper/h2#1181). ``receive_data`` then raises, and the events it had gathered from
the same read are lost with it: the ConnectionTerminated, and the answers that came before the GOAWAY.
httpcore never learns of the GOAWAY (its ``_connection_terminated`` stays None), so the streams still
waiting read on until the server closes the socket and all fail with "Server disconnected", which is a
read error: nginx rotating every 10 streams, 62 connections in 1,000 GETs at 50 in flight, 668 tries
failed so (each on a connection whose h2 state had received the GOAWAY), and the breaker opened against
a healthy server (988 of 1,000 ended in CircuitOpenError).

``GoawayH2`` is h2's connection that handles a GOAWAY after the frames that follow it in the same read:
the answers the server still owes are taken (the streams complete) and ``receive_data`` returns its
events, the ConnectionTerminated last, so httpcore's own GOAWAY handling runs: a stream above
last_stream_id goes to another connection (ConnectionNotAvailable, the pool's own retry), a stream the
server may still be running fails with the GOAWAY (``_classify``: CLOSED, idempotent-only retry, neutral
for the breaker, budget-free), and the connection is closed once its streams are done. (An answer that
comes in a later read than the GOAWAY is still lost: httpcore reads no more once it has the GOAWAY.) A
stream httpcore opens on it after the GOAWAY arrived (it took the connection before) never reached the
server: the same ConnectionNotAvailable sends it to another connection. A server that dies without a
GOAWAY (reset, killed) is unchanged: its streams fail with "Server disconnected" / a reset, read errors
that count against the breaker.

Once the GOAWAY is in, httpcore failed every stream that then went to read, before looking whether
another stream's read had brought its answer along with the GOAWAY: ``answered_meanwhile`` lets such a
stream take its answer (``_Answered``; the sync client's ``_Guarded`` the same).

The seam: as ``_sync_h2`` does, the transport's httpcore pool (``transport_pool``) becomes ``_Pool``, whose
connections (``_Connection``) swap the class of the HTTP/2 connection (``_Answered``) and of its h2 state
(``GoawayH2``) as httpcore creates them. httpcore's code runs unchanged. The sync client's ``_LockedH2``
is a ``GoawayH2`` too.
"""

from __future__ import annotations

from typing import Any

import h2.connection
import httpcore
from httpcore._async.connection import AsyncHTTPConnection
from httpcore._async.http2 import AsyncHTTP2Connection
from hyperframe.frame import GoAwayFrame

__all__ = ["GoawayH2", "answered_meanwhile", "guard_async_pool", "keep_goaway"]


class GoawayH2(h2.connection.H2Connection):
    """h2's connection that takes the answers a server sends behind its GOAWAY in the same read, and keeps
    the GOAWAY's event (set on an existing H2Connection as its class: ``keep_goaway``, so it has no
    ``__init__`` of its own)."""

    _perf_goaway: bool  # a GOAWAY was received: h2 is CLOSED and refuses every frame but another GOAWAY
    _perf_held: list[Any]  # GOAWAY frames of the read in progress, handled after its other frames

    def receive_data(self, data: Any) -> Any:
        """h2's, with a GOAWAY handled after the frames that follow it in the same read: RFC 9113 §6.8 lets
        a server finish the streams up to last_stream_id after its GOAWAY, and h2, CLOSED by the GOAWAY,
        would refuse their answers (and lose this read's events)."""
        self._perf_held = []
        try:
            events = super().receive_data(data)
        finally:
            held, self._perf_held = self._perf_held, []
        for frame in held:  # only GOAWAYs, which h2 takes in any state
            events.extend(super()._receive_frame(frame))
            self._perf_goaway = True
        return events

    def _receive_frame(self, frame: Any) -> Any:
        if isinstance(frame, GoAwayFrame) and not self._perf_goaway:
            self._perf_held.append(frame)
            return []
        if self._perf_goaway and not isinstance(frame, GoAwayFrame):
            # behind a GOAWAY handled in an earlier read (httpcore reads no more then, but another user
            # of h2 might): h2 refuses it, and would raise and lose this read's events
            return []
        return super()._receive_frame(frame)

    def send_headers(self, stream_id: int, *args: Any, **kwargs: Any) -> None:
        """A stream opened after the server's GOAWAY never reaches it: httpcore's pool takes
        ConnectionNotAvailable as "try another connection" (h2's refusal would fail the request)."""
        if self._perf_goaway:
            raise httpcore.ConnectionNotAvailable()
        super().send_headers(stream_id, *args, **kwargs)


def keep_goaway(state: Any) -> None:
    """Make a fresh h2 connection a ``GoawayH2`` (anything else, a subclass included, left alone)."""
    if type(state) is h2.connection.H2Connection:
        fresh: Any = state
        fresh._perf_goaway = False
        fresh._perf_held = []
        fresh.__class__ = GoawayH2


def answered_meanwhile(exc: Exception, stream_id: int | None, terminated: Any, events: Any) -> bool:
    """Whether httpcore's ``_receive_events`` failed a stream with the server's GOAWAY (``exc`` carries the
    connection's ``terminated`` event) although the stream's answer is queued in ``events``: another
    stream's read took the answer and the GOAWAY behind it while this one waited for the read lock, and
    httpcore checks for the GOAWAY before it looks for an answer. Taken, the answer is the stream's
    (without it, 303 answered streams failed in 1,200 GETs, a rotation every 10 streams)."""
    return (
        stream_id is not None
        and terminated is not None
        and bool(exc.args)
        and exc.args[0] is terminated
        and bool(events.get(stream_id))
    )


class _Answered(AsyncHTTP2Connection):
    """httpcore's async HTTP/2 connection that lets a stream take its answer when the GOAWAY came with it,
    its h2 state a ``GoawayH2`` (set as its class by ``_Connection``: ``adopt``)."""

    def adopt(self) -> None:
        """Made an ``_Answered`` just now, by ``_Connection``: its h2 state becomes a ``GoawayH2``."""
        keep_goaway(self._h2_state)

    async def _receive_events(self, request: Any, stream_id: int | None = None) -> None:
        try:
            await super()._receive_events(request, stream_id)
        except httpcore.RemoteProtocolError as exc:
            if not answered_meanwhile(exc, stream_id, self._connection_terminated, self._events):
                raise


class _Connection(AsyncHTTPConnection):
    """httpcore's async connection with ``keep_goaway`` on the h2 state of the HTTP/2 connection it
    creates: httpcore assigns ``self._connection`` once, under its request lock, before any request."""

    @property
    def _connection(self) -> Any:
        return self.__dict__.get("_connection")

    @_connection.setter
    def _connection(self, conn: Any) -> None:
        if type(conn) is AsyncHTTP2Connection:
            answered: Any = conn
            answered.__class__ = _Answered
            answered.adopt()
        self.__dict__["_connection"] = conn


class _Pool(httpcore.AsyncConnectionPool):
    """httpcore's async pool making ``_Connection``s (no proxy: our transports have none)."""

    def create_connection(self, origin: httpcore.Origin) -> Any:
        conn = super().create_connection(origin)
        if type(conn) is AsyncHTTPConnection:
            conn.__class__ = _Connection
        return conn


def guard_async_pool(pool: Any) -> None:
    """Make an httpx ``AsyncHTTPTransport``'s pool keep the GOAWAY on each HTTP/2 connection it opens (a
    pool of another type, a proxy's, is left alone). ``pool``: ``_routing.transport_pool``'s."""
    if type(pool) is httpcore.AsyncConnectionPool:
        pool.__class__ = _Pool
