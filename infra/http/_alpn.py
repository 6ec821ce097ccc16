"""Which HTTP a TLS origin listed for HTTP/2 really speaks, and the slot gates that follow from it.

Over TLS, HTTP/2 is only offered (ALPN). A server that declines answers over HTTP/1.1, and the HTTP/2
carrier then opens a connection per call in flight (pyreqwest up to 100, httpx + h2 up to 16): an HTTP/2
origin's gate of ``http2_max_streams`` would let every one of those calls hold a connection, past
``max_per_host`` and ``max_connections``. So such an origin starts with HTTP/1.1's gates (``host_gates``)
and its first response says which it is: HTTP/2 opens its gate to the streams and moves it off the global
gate; HTTP/1.x leaves HTTP/1.1's gates for good (counted, logged once). One that spoke HTTP/2 and later
answers over HTTP/1.x (a fleet behind one name) goes back to HTTP/1.1's gates the same way: the calls in
flight finish, and no new one starts until fewer than ``max_per_host`` are (``resize``'s debt).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from infra.http._core import HostState
from infra.http._lease import UNBOUNDED, AsyncGate, host_gates, resize
from infra.http._routing import native_http2

if TYPE_CHECKING:
    from infra.config.sections.http import HttpConfig

__all__ = ["Alpn", "Stats", "async_host"]

log = logging.getLogger("infra.http")


class Alpn:
    """A TLS HTTP/2 origin's version watch (``HostState.alpn``; None once it answered over HTTP/1.x). The
    client calls ``seen`` with each response's version while it is set: one attribute test a call
    otherwise."""

    __slots__ = ("global_gate", "per_host", "spoke_h2", "stats", "streams")

    def __init__(self, streams: int, per_host: int, global_gate: AsyncGate, stats: Any) -> None:
        self.streams = streams  # the gate once HTTP/2 is seen (host_gates' third value)
        self.per_host = per_host
        self.global_gate = global_gate
        self.stats = stats  # the client's: counts origins that declined (pool_stats' http2_declined)
        self.spoke_h2 = False

    def seen(self, host: Any, version: str) -> None:
        if version == "HTTP/2":
            if not self.spoke_h2:
                self.spoke_h2 = True
                # streams take no slot of max_connections; the calls queued for this origin go at once
                streams = host.shared = AsyncGate(UNBOUNDED)
                resize(host.slots, self.streams, streams)
            return
        host.alpn = None
        if self.spoke_h2:
            resize(host.slots, self.per_host)
            host.shared = self.global_gate
        self.stats.http2_declined += 1
        log.info(
            "infra.http: %s is listed for HTTP/2 but answered over %s: it keeps HTTP/1.1's limits "
            "(max_per_host, max_connections) from now on",
            host.origin,
            version,
        )


class Stats:
    """What AsyncPerfClient counts for ``pool_stats``: slots held, origins that declined HTTP/2."""

    __slots__ = ("http2_declined", "in_use")

    def __init__(self) -> None:
        self.in_use = 0
        self.http2_declined = 0


def async_host(settings: HttpConfig, origin: str, global_gate: AsyncGate, stats: Stats) -> HostState:
    """A new origin's state for AsyncPerfClient: its gates (``host_gates``, for the client's HTTP/2
    carrier), with a version watch when it is a TLS origin listed for HTTP/2."""
    carrier = "pyreqwest" if native_http2(settings) else "httpx"
    slots, shared, streams = host_gates(settings, origin, AsyncGate, global_gate, carrier=carrier)
    alpn = Alpn(streams, settings.max_per_host, global_gate, stats) if streams else None
    return HostState(origin, settings, slots, shared, alpn)
