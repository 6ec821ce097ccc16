"""What PerfClient and AsyncPerfClient share around their loops: construction from the ``http`` section
(or keywords naming its fields), the per-origin states and their public reads, a closed stream's metrics,
and the ``stream()`` context's state. Each client adds its own transports in ``_open`` and its ``_host``
(the sync one under a lock)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from infra.http._core import Call, HostState
from infra.http._origin import origin_of
from infra.http._routing import CallArgs, Default, HttpOverrides, build_settings, settings_of

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

    from infra.cache import Cache
    from infra.config import PerfConfig
    from infra.config.sections.http import HttpConfig
    from infra.http._response import Response

__all__ = ["ClientBase", "StreamContext"]

_monotonic = time.monotonic


class ClientBase:
    """Takes the ``http`` settings section (``AsyncPerfClient(config.http)``) and/or keywords naming its
    fields (``PerfClient(retry=RetryConfig(attempts=1), http2=True)``)."""

    def __init__(
        self,
        settings: HttpConfig | None = None,
        *,
        cache_store: Cache | None = None,
        verify: bool | str = True,
        **overrides: Unpack[HttpOverrides],
    ) -> None:
        self._settings = build_settings(settings, overrides)
        self._hosts: dict[str, HostState] = {}
        self._closed = False
        # An infra.cache.Cache to use instead of get_cache() (tests, embedding apps).
        self._cache_store = cache_store
        # TLS for https origins: True verifies against the system CA roots, a path to a CA bundle trusts
        # that (private) CA, False turns verification off. Each transport gets its own SSLContext
        # (tls_context): httpx sets ALPN h2 on the context it is given, which would make aiohttp offer h2.
        self._verify = verify
        self._open()

    def _open(self) -> None:
        """The client's own state and transports (the last step of ``__init__``)."""
        raise NotImplementedError

    @classmethod
    def from_config(
        cls, config: PerfConfig | None = None, *, cache_store: Cache | None = None, verify: bool | str = True
    ) -> Self:
        """The client over ``config.http`` for the process-wide config (or ``config``), with its
        ``metrics.enabled`` switch applied."""
        return cls(settings_of(config), cache_store=cache_store, verify=verify)

    @property
    def settings(self) -> HttpConfig:
        return self._settings

    def breaker_state(self, url: str) -> str:
        """The circuit breaker state ("closed", "open", "half_open") for the origin of ``url``."""
        host = self._hosts.get(origin_of(url))
        return host.breaker.state if host is not None else "closed"

    def host_state(self, url: str) -> HostState:
        return self._host(origin_of(url))

    def _host(self, origin: str) -> HostState:
        raise NotImplementedError

    def _begin(self, args: CallArgs, host: HostState) -> tuple[Call, float | None]:
        """A logical call's retry state, and its deadline (``timeout.total``, or the call's ``deadline=``)."""
        started = _monotonic()
        total: float | None = self._settings.timeout.total
        if not isinstance(args.deadline, Default):
            total = args.deadline
        call = Call(self._settings.retry, host, args.method, args.retry_ok, started)
        return call, (started + total if total is not None else None)

    def _record_stream(self, response: Response, started: float) -> None:
        """A stream closed: the whole stream, headers to close, is the request's duration (TTFB apart)."""
        host = self._hosts.get(response.origin)
        if host is not None:
            host.metrics.duration(response.method, response.status, _monotonic() - started)


class StreamContext:
    """A ``stream()`` call's context: its arguments, then the response it opened (closed on exit, always)."""

    __slots__ = ("_args", "_client", "_response", "_started")

    def __init__(self, client: Any, args: CallArgs) -> None:
        self._client = client
        self._args = args
        self._response: Any = None
        self._started = 0.0

    def _closing(self) -> Any:
        """On exit: the response to close (once; None if none was opened)."""
        response, self._response = self._response, None
        return response

    def _closed(self, response: Response) -> None:
        """The response is closed: the whole stream is the call's duration (``_record_stream``)."""
        self._client._record_stream(response, self._started)
