"""The aiohttp session behind AsyncPerfClient: every request sent once, and idle connections inside the limit.

Two things aiohttp does by default that break what the client promises:

* **Silent replays.** ``ClientSession`` resends an idempotent request once, unseen, when a reused
  keep-alive connection fails (RFC 9112 §9.3.1.1, ``retry_persistent_connection`` in aiohttp's
  ``ClientSession._request``, since 3.10). Under a retry policy that doubles every try behind our back:
  a call with ``attempts=0`` reached a resetting server twice, and ``history`` (what we report)
  undercounted what the server received. Our retry loop already decides, with the budget and the
  breaker, whether a request may go again, so aiohttp's own retry is turned off (``_retry_connection``,
  the switch aiohttp's own ``test_utils.TestClient`` uses for the same reason; it exists since 3.11,
  hence ``aiohttp>=3.11``). With the layer off (``enabled: false``: no retry loop, ``attempts`` 0) it is
  left on: the off client must be no less robust than a plain aiohttp session, which survives a server
  closing an idle keep-alive connection by resending an idempotent request once.
* **Idle connections outside the limit.** ``TCPConnector(limit=...)`` counts connections handed out, not
  the idle keep-alive ones it holds, so four busy origins kept 24 sockets open under a limit of 16.
  ``_BoundedConnector`` closes the least recently used idle connections (any origin) before it opens a
  new one, so at no moment are more than ``limit`` connections open in all, or ``limit_per_host`` to one
  origin, idle ones included.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

__all__ = ["connector_options", "handed_out", "make_session", "open_connections"]

_LAYER_DNS_TTL = 300
_PLAIN_DNS_TTL = 10  # aiohttp's TCPConnector default


# The seam into aiohttp's connector: its private ``_acquired`` (connections handed out) and ``_conns``
# (idle keep-alive ones per key) are read here and nowhere else; aiohttp has no public count of either.


def handed_out(connector: Any) -> int:
    """Connections the connector has handed out and not yet got back."""
    return len(connector._acquired)


def open_connections(connector: Any) -> int:
    """Connections the connector holds open: handed out plus idle keep-alive ones."""
    return handed_out(connector) + sum(len(idle) for idle in connector._conns.values())


class _BoundedConnector(aiohttp.TCPConnector):
    """A TCPConnector whose limits count idle keep-alive connections too."""

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
        # connect() has put this connection's placeholder in _acquired already: it counts as open.
        key = req.connection_key
        closed = self._make_room(key)
        if closed:
            # transport.close() closes the socket on the loop's next turn: let it, so the server sees the old
            # connection end before the new one starts (never limit + 1 open, even for a moment).
            await asyncio.sleep(0)
        return await super()._create_connection(req, traces, timeout)

    def _make_room(self, key: Any) -> int:
        """Close idle connections, least recently used first, until one more fits both limits."""
        conns: dict[Any, Any] = self._conns
        closed = 0
        if self._limit_per_host:
            own = conns.get(key)
            while own and len(self._acquired_per_host.get(key, ())) + len(own) > self._limit_per_host:
                self._close_idle(key, own)
                closed += 1
        if self._limit:
            excess = open_connections(self) - self._limit
            while excess > 0:
                keys = [k for k, idle in conns.items() if idle]
                if not keys:
                    break
                oldest = min(keys, key=lambda k: conns[k][0][1])
                self._close_idle(oldest, conns[oldest])
                closed += 1
                excess -= 1
        return closed

    def _close_idle(self, key: Any, idle: Any) -> None:
        proto, _ = idle.popleft()
        if not idle:
            del self._conns[key]
        transport = proto.transport
        proto.close()
        if transport is not None and key.is_ssl:
            transport.abort()  # no TLS close_notify round trip: the socket goes now


def connector_options(
    limit: int, limit_per_host: int, keepalive: float, ssl: Any, resend: bool
) -> dict[str, Any]:
    """The session's TCPConnector keywords. The layer caches DNS answers 300 s; off (``resend``),
    aiohttp's default (10 s), as a plain session has it."""
    return {
        "limit": limit,
        "limit_per_host": limit_per_host,
        "keepalive_timeout": keepalive,
        "ttl_dns_cache": _PLAIN_DNS_TTL if resend else _LAYER_DNS_TTL,
        "ssl": ssl,
    }


def make_session(
    *,
    limit: int,
    limit_per_host: int,
    keepalive: float,
    connect: float | None,
    ssl: Any,
    headers: Any,
    resend: bool = False,
) -> aiohttp.ClientSession:
    """The session: ``resend`` (the layer off) keeps aiohttp's silent resend on a dropped keep-alive
    connection and its DNS cache TTL, as a plain session has them; otherwise every try is ours to decide
    and to report."""
    connector = _BoundedConnector(**connector_options(limit, limit_per_host, keepalive, ssl, resend))
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect),
        headers=headers,
        # One client serves many callers (and accounts): never replay one caller's cookies to another.
        # httpx's transport, used for HTTP/2 and by PerfClient, keeps none either.
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    # Every try is ours to decide and to report (see the module docstring), unless the layer is off.
    session._retry_connection = resend
    return session
