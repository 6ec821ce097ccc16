"""The client's settings (from keywords or the process config), which transport carries each origin
(HTTP/2 or not), and the httpx transports both clients build."""

from __future__ import annotations

import contextlib
import dataclasses
import ssl
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypedDict

from infra.config.sections import http as section
from infra.config.sections.http import HttpConfig
from infra.http._ident import DEFAULT_HEADERS, prepare_headers

if TYPE_CHECKING:
    from infra.config import PerfConfig

__all__ = [
    "DEFAULT",
    "PYREQWEST_KINDS",
    "CallArgs",
    "Default",
    "HttpOverrides",
    "Params",
    "RequestOptions",
    "StreamOptions",
    "active_connections",
    "async_backend_for",
    "backend_for",
    "build_settings",
    "call_args",
    "httpx_request",
    "httpx_transport",
    "require_pyreqwest",
    "settings_of",
    "tls_context",
    "transport_pool",
    "uses_http2",
]


class HttpOverrides(TypedDict, total=False):
    """The keywords a client takes to build its settings: HttpConfig's fields (a test keeps them equal)."""

    enabled: bool
    backend: str
    http2: bool
    http2_hosts: Sequence[str]
    metrics: bool
    max_connections: int
    max_per_host: int
    keepalive_expiry: float
    timeout: section.TimeoutConfig
    retry: section.RetryConfig
    retry_budget: section.RetryBudgetConfig
    breaker: section.BreakerConfig
    cache: section.HttpCacheConfig


#: Query parameters: names to values (each sent as ``str(value)``).
Params = Mapping[str, object]


class StreamOptions(TypedDict, total=False):
    """The keywords of ``stream()`` (and, with ``cache``, of ``request()`` and every verb):

    ``params`` the query, ``headers`` the caller's (over our defaults, case-insensitively), ``content`` or
    ``json`` the body, ``idempotent=True`` lets a POST / PATCH be retried under one Idempotency-Key,
    ``deadline`` this call's one deadline in seconds (None: none; default: ``timeout.total``)."""

    params: Params | None
    headers: Mapping[str, str] | None
    content: bytes | str | None
    json: object
    idempotent: bool
    deadline: float | Default | None


class RequestOptions(StreamOptions, total=False):
    """``stream()``'s keywords, and ``cache``: True / False to force response caching on / off for this
    call (default: ``cache.enabled``)."""

    cache: bool | None


class Default:
    """The type of ``DEFAULT``: "use the configured value" (None already means "no limit")."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Final = Default()

_FIELDS = frozenset(f.name for f in dataclasses.fields(HttpConfig))


def build_settings(settings: HttpConfig | None, overrides: HttpOverrides) -> HttpConfig:
    """``AsyncPerfClient(retry=RetryConfig(attempts=1), http2=True)`` → the one HttpConfig the client
    runs with (``enabled: false`` made the plain pooled client: ``HttpConfig.effective``)."""
    base = settings if settings is not None else _default_settings()
    fields: dict[str, object] = dict(overrides)
    unknown = set(fields) - _FIELDS
    if unknown:
        raise TypeError(f"unknown client setting(s) {sorted(unknown)}; expected some of {sorted(_FIELDS)}")
    if "http2_hosts" in overrides:
        fields["http2_hosts"] = tuple(overrides["http2_hosts"])
    built = dataclasses.replace(base, **fields) if fields else base  # type: ignore[arg-type]
    return built.effective()


def _default_settings() -> HttpConfig:
    """``AsyncPerfClient()``: the process config's ``http`` section, master switches applied
    (``settings_of``): ``enabled: false``, ``PERF_ENABLED=0`` or ``http.enabled: false`` give the plain
    pooled client, and an unusable file gives it too (``get_config``'s fail-open policy, one warning)."""
    return settings_of()


_h2_memo: dict[tuple[tuple[str, ...], str], bool] = {}


def uses_http2(settings: HttpConfig, origin: str) -> bool:
    """Whether ``origin`` (scheme://host:port) goes over HTTP/2: ``http2=True`` or a match in
    ``http2_hosts`` by host or host:port."""
    if settings.http2:
        return True
    if not settings.http2_hosts:
        return False
    key = (settings.http2_hosts, origin)
    found = _h2_memo.get(key)
    if found is None:
        hostport = origin.split("://", 1)[1]
        host = hostport.rsplit(":", 1)[0]
        found = hostport in settings.http2_hosts or host in settings.http2_hosts
        if len(_h2_memo) < 4096:
            _h2_memo[key] = found
    return found


#: The kinds of the pyreqwest backend (``backend="pyreqwest"``): its HTTP/1.1, HTTP/2 and h2c clients.
PYREQWEST_KINDS: Final = frozenset({"rq-h1", "rq-h2", "rq-h2c"})


def backend_for(settings: HttpConfig, url: str, origin: str) -> str:
    """Which transport carries a request: "h2c" / "h2" (httpx + h2, cleartext prior knowledge or TLS ALPN)
    for HTTP/2 origins, else "aiohttp", or "h1" (httpx) when ``backend="httpx"``."""
    if uses_http2(settings, origin):
        return "h2c" if url.startswith("http:") else "h2"
    return "h1" if settings.backend == "httpx" else "aiohttp"


def async_backend_for(settings: HttpConfig, url: str, origin: str) -> str:
    """``backend_for`` for AsyncPerfClient, where ``backend="pyreqwest"`` carries every origin over pyreqwest
    ("rq-h1", "rq-h2", "rq-h2c"; the sync client, all httpx, ignores that choice)."""
    kind = backend_for(settings, url, origin)
    if settings.backend != "pyreqwest":
        return kind
    return "rq-h1" if kind == "aiohttp" else "rq-" + kind


def require_pyreqwest(settings: HttpConfig) -> None:
    """Load pyreqwest now when the settings ask for it (so the first call's deadline doesn't pay for the
    import), or say what to install: a ConfigError naming ``http.backend``."""
    if settings.backend != "pyreqwest":
        return
    try:
        import pyreqwest.client  # noqa: F401
    except ImportError as exc:
        from infra.errors import ConfigError, ConfigProblem

        raise ConfigError(
            [
                ConfigProblem(
                    "http.backend",
                    f"'pyreqwest' needs the pyreqwest package ({exc}); install the native extra: "
                    "pip install 'perf-infra[native]', or set http.backend to 'aiohttp'",
                )
            ]
        ) from exc


def tls_context(verify: bool | str) -> ssl.SSLContext:
    """A fresh SSLContext for one transport: system roots (True), a CA bundle (path), or no verification
    (False). Fresh per transport because httpx configures ALPN on the context it is handed."""
    if verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if verify is True:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=verify)


def settings_of(config: PerfConfig | None = None) -> HttpConfig:
    """The ``http`` section of ``config`` (the process-wide config when None), with the config's
    ``metrics.enabled`` switch applied (the master ``enabled`` switch the loader applied already)."""
    if config is None:
        from infra.config import get_config

        config = get_config()
    settings = config.http
    if not config.metrics.enabled:
        settings = dataclasses.replace(settings, metrics=False)
    return settings


def httpx_transport(settings: HttpConfig, kind: str, verify: bool | str, *, sync: bool) -> Any:
    """An httpx transport for ``kind`` ("h1", "h2" over TLS ALPN, "h2c" prior knowledge) under the client's
    limits. The transport, not httpx's Client: the Client logs every full URL at INFO, which would put
    query-string secrets in logs."""
    import httpx

    transport = httpx.HTTPTransport if sync else httpx.AsyncHTTPTransport
    return transport(
        http1=kind != "h2c",
        http2=kind != "h1",
        verify=tls_context(verify),
        limits=httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
            keepalive_expiry=settings.keepalive_expiry,
        ),
    )


def transport_pool(transport: Any) -> Any:
    """The httpcore connection pool under an httpx transport: the one seam into httpx's internals (its
    ``_pool``; httpx has no public handle on it), read for connection counts and by ``Affinity``."""
    return getattr(transport, "_pool", None)


def active_connections(transports: Iterable[Any]) -> int:
    """Connections of httpx transports' pools that are not idle (in use or still opening)."""
    active = 0
    for transport in list(transports):
        for conn in list(getattr(transport_pool(transport), "connections", ()) or ()):
            with contextlib.suppress(Exception):
                if not conn.is_idle() and not conn.is_closed():
                    active += 1
    return active


class CallArgs(NamedTuple):
    """One logical call as a client's retry loop takes it (``headers``: the caller's, with an
    Idempotency-Key when ``idempotent``; ``retry_ok``: statuses and read errors may be retried)."""

    method: str
    url: str
    params: Params | None
    headers: Mapping[str, str] | None
    content: bytes | str | None
    json: object
    retry_ok: bool
    deadline: float | Default | None
    stream: bool


_tuple_new = tuple.__new__


def call_args(
    method: str,
    url: str,
    stream: bool,
    *,
    params: Params | None = None,
    headers: Mapping[str, str] | None = None,
    content: bytes | str | None = None,
    json: object = None,
    idempotent: bool = False,
    deadline: float | Default | None = DEFAULT,
    cache: bool | None = None,
) -> tuple[CallArgs, bool | None]:
    """A verb's keywords (``RequestOptions``) as the loop's arguments, and the call's ``cache`` choice;
    the one place both clients read them."""
    sent, retry_ok = prepare_headers(headers, idempotent)
    # tuple.__new__ straight: a NamedTuple's own __new__ is a Python function, a frame on every request.
    args = _tuple_new(CallArgs, (method, url, params, sent, content, json, retry_ok, deadline, stream))
    return args, cache


def httpx_request(
    httpx: Any, method: str, url: str, params: Any, headers: Any, content: Any, json: Any, timeout: Any
) -> Any:
    """The httpx request of one attempt, as both clients send it over an httpx transport: our default
    headers under the caller's (case-insensitively: the caller's value replaces ours), and the attempt's
    timeouts in its extensions (where httpcore reads them)."""
    merged = httpx.Headers(DEFAULT_HEADERS)
    if headers:
        merged.update(headers)
    return httpx.Request(
        method,
        url,
        params=params,
        headers=merged,
        content=content,
        json=json,
        extensions={"timeout": timeout},
    )
