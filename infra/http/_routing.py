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
from infra.http._body import Content, OneShot, Upload, request_body
from infra.http._ident import DEFAULT_HEADERS, prepare_headers
from infra.http._url import Credentialed, Params, url_credentials, wire_known, wire_new, with_params

if TYPE_CHECKING:
    from infra.config import PerfConfig

__all__ = [
    "DEFAULT",
    "PYREQWEST_KINDS",
    "CallArgs",
    "Default",
    "HttpOverrides",
    "RequestOptions",
    "StreamOptions",
    "aclose_reset",
    "active_connections",
    "areset_orphans",
    "async_backend_for",
    "backend_for",
    "build_settings",
    "call_args",
    "close_reset",
    "h2_connection",
    "h2_connections",
    "httpx_request",
    "httpx_transport",
    "native_http2",
    "require_pyreqwest",
    "reset_orphans",
    "settings_of",
    "tls_context",
    "transport_pool",
    "uses_http2",
]


class HttpOverrides(TypedDict, total=False):
    """The keywords a client takes to build its settings: HttpConfig's fields (a test keeps them equal)."""

    enabled: bool
    backend: str
    http2_backend: str
    http2: bool
    http2_hosts: Sequence[str]
    metrics: bool
    max_connections: int
    max_per_host: int
    http2_max_streams: int
    keepalive_expiry: float
    timeout: section.TimeoutConfig
    retry: section.RetryConfig
    retry_budget: section.RetryBudgetConfig
    breaker: section.BreakerConfig
    cache: section.HttpCacheConfig


class StreamOptions(TypedDict, total=False):
    """The keywords of ``stream()`` (and, with ``cache``, of ``request()`` and every verb):

    ``params`` the query (``Params``), ``headers`` the caller's (over our defaults, case-insensitively; a
    non-ASCII value is sent UTF-8 encoded), ``content`` (``Content``: bytes, str, a file, an iterable of
    bytes) or ``json`` the body, ``idempotent=True`` lets a POST / PATCH be retried under one
    Idempotency-Key (a one-shot ``content`` is never retried once read: see ``Content``),
    ``deadline`` this call's one deadline in seconds (None: none; default: ``timeout.total``)."""

    params: Params | None
    headers: Mapping[str, str] | None
    content: Content | None
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
    ("rq-h1", "rq-h2", "rq-h2c"; the sync client, all httpx, ignores that choice), and with the default
    ``backend="aiohttp"``, which has no HTTP/2, an HTTP/2 origin goes over ``http2_backend``: pyreqwest
    ("auto" where it is installed) or httpx. So a client's kinds are aiohttp / httpx, aiohttp / pyreqwest,
    or all pyreqwest: never httpx and pyreqwest together."""
    kind = backend_for(settings, url, origin)
    if settings.backend == "pyreqwest" or (kind[:2] == "h2" and native_http2(settings)):
        return "rq-h1" if kind == "aiohttp" else "rq-" + kind
    return kind


_native: list[bool] = []  # "auto": whether pyreqwest loads here, found once a process


def native_http2(settings: HttpConfig) -> bool:
    """Whether AsyncPerfClient's HTTP/2 goes over pyreqwest: ``backend="pyreqwest"``, or with aiohttp
    ``http2_backend`` "pyreqwest", or "auto" and it loads here (a missing package, or a native wheel that
    fails to load on this platform, leaves HTTP/2 to httpx)."""
    if settings.backend != "aiohttp":
        return settings.backend == "pyreqwest"
    if not (settings.http2 or settings.http2_hosts):
        return False  # no HTTP/2 at all: pyreqwest stays unloaded
    choice = settings.http2_backend
    if choice != "auto":
        return choice == "pyreqwest"
    if not _native:
        try:
            import pyreqwest.client  # noqa: F401
        except Exception:
            _native.append(False)
        else:
            _native.append(True)
    return _native[0]


def require_pyreqwest(settings: HttpConfig) -> None:
    """Load pyreqwest now when the settings ask for it (so the first call's deadline doesn't pay for the
    import), or say what to install: a ConfigError naming ``http.backend`` or ``http.http2_backend``."""
    h2 = settings.backend == "aiohttp" and (settings.http2 or bool(settings.http2_hosts))
    if settings.backend == "pyreqwest":
        field = "http.backend"
    elif h2 and settings.http2_backend == "pyreqwest":
        field = "http.http2_backend"
    else:
        if h2:
            native_http2(settings)  # "auto": loaded now where it is installed
        return
    try:
        import pyreqwest.client  # noqa: F401
    except ImportError as exc:
        from infra.errors import ConfigError, ConfigProblem

        raise ConfigError(
            [
                ConfigProblem(
                    field,
                    f"'pyreqwest' needs the pyreqwest package ({exc}); install the native extra: "
                    f"pip install 'perf-infra[native]', or set {field} to "
                    f"'{'aiohttp' if field == 'http.backend' else 'httpx'}'",
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

    transport = (httpx.HTTPTransport if sync else httpx.AsyncHTTPTransport)(
        http1=kind != "h2c",
        http2=kind != "h1",
        verify=tls_context(verify),
        limits=httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
            keepalive_expiry=settings.keepalive_expiry,
        ),
    )
    if sync and kind != "h1":  # PerfClient's threads share each HTTP/2 connection: see _sync_h2
        from infra.http._sync_h2 import guard_sync_pool

        guard_sync_pool(transport_pool(transport))  # keeps the GOAWAY too (its h2 state is a GoawayH2)
    elif kind != "h1":  # h2 loses a GOAWAY that answers follow in one read: see _h2_goaway
        from infra.http._h2_goaway import guard_async_pool

        guard_async_pool(transport_pool(transport))
    return transport


def transport_pool(transport: Any) -> Any:
    """The httpcore connection pool under an httpx transport: the one seam into httpx's internals (its
    ``_pool``; httpx has no public handle on it), read for connection counts and by ``Affinity``."""
    return getattr(transport, "_pool", None)


def h2_connection(resp: Any) -> Any:
    """httpcore's HTTP/2 connection an httpx response came on, for ``close_reset``; None for HTTP/1.1, or
    where httpcore isn't as expected (a seam into httpx's internals, like ``transport_pool``: httpx's
    response stream, httpcore's pool stream, its HTTP/2 stream's connection, read defensively)."""
    if resp.extensions.get("stream_id") is None:  # httpcore's HTTP/2 responses carry their stream id
        return None
    stream = getattr(getattr(getattr(resp, "stream", None), "_httpcore_stream", None), "_stream", None)
    conn = getattr(stream, "_connection", None)
    return conn if getattr(conn, "_h2_state", None) is not None else None


def h2_connections(transport: Any) -> list[Any]:
    """The HTTP/2 connections in an httpx transport's pool (httpcore's connection under each pooled one)."""
    found = []
    for pooled in list(getattr(transport_pool(transport), "connections", ()) or ()):
        conn = getattr(pooled, "_connection", None)
        if getattr(conn, "_h2_state", None) is not None:
            found.append(conn)
    return found


def _reset_orphans(conn: Any) -> bool:
    """RST_STREAM(CANCEL) queued in the connection's h2 state for each stream h2 holds open that httpcore
    has let go of (no longer in its ``_events``); whether any was. True if a frame is to be sent.

    httpcore (1.0) lets go of a stream without telling the server whenever its call ends before the
    stream did: cancelled or timed out before the response headers (task.cancel(), wait_for, our
    first-byte timer, the deadline), or during the body, or closed with its body unread. The stream stays
    open at the server (which keeps working: an LLM stream the caller left runs on) and in h2's count of
    open streams: once the server's SETTINGS_MAX_CONCURRENT_STREAMS (100) pile up, every new request on
    that connection fails with "Max outbound streams is 100, 100 open", and the connection, still
    "available", is never replaced (plain httpx: 100 calls cancelled before their headers, then every
    call failed). A reset closes the stream in h2 at once (its slot freed) and tells the server to stop.
    httpcore puts a stream in ``_events`` before h2 opens it and takes it out when the call lets go, so a
    stream open in h2 and not there is one nobody will read again: resetting it is always right."""
    try:
        held = conn._events
        streams = list(conn._h2_state.streams.items())  # one C-level copy: a sync thread may add one
    except Exception:
        return False
    queued = False
    for stream_id, stream in streams:
        if stream_id not in held and not stream.closed:
            try:
                conn._h2_state.reset_stream(stream_id, error_code=8)  # CANCEL
            except Exception:  # closed meanwhile (ended, reset by the server, connection gone)
                continue
            queued = True
    return queued


async def areset_orphans(conns: Iterable[Any], request: Any) -> None:
    """Reset the streams httpcore let go of on ``conns`` (``_reset_orphans``) and send the frames under
    httpcore's write lock (its write timeout read from ``request``'s extensions); nothing raised but a
    cancel."""
    for conn in conns:
        if _reset_orphans(conn):
            with contextlib.suppress(Exception):
                await conn._write_outgoing_data(request)


def reset_orphans(conns: Iterable[Any], request: Any) -> None:
    """``areset_orphans`` for the sync client's httpcore."""
    for conn in conns:
        if _reset_orphans(conn):
            with contextlib.suppress(Exception):
                conn._write_outgoing_data(request)


async def aclose_reset(resp: Any) -> None:
    """Close an httpx response whose body was not read to its end, then reset its HTTP/2 stream, which
    httpcore's close leaves open (``_reset_orphans``)."""
    conn = h2_connection(resp)
    try:
        await resp.aclose()
    finally:
        if conn is not None:
            await areset_orphans((conn,), resp.request)


def close_reset(resp: Any) -> None:
    """``aclose_reset`` for the sync client's httpx response."""
    conn = h2_connection(resp)
    try:
        resp.close()
    finally:
        if conn is not None:
            reset_orphans((conn,), resp.request)


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
    """One logical call as a client's retry loop takes it: ``url`` with the call's params appended
    (``with_params``; ``params`` is then None) and quoted as aiohttp sends it (``wire_url``), ``headers``
    the caller's with an Idempotency-Key when ``idempotent`` and the body's Content-Type / Content-Length
    (``request_body``), ``content`` the prepared body (json encoded; ``json`` is then None), ``retry_ok``:
    statuses and read errors may be retried (None: never, the body can be read only once)."""

    method: str
    url: str
    params: Params | None
    headers: Mapping[str, str] | None
    content: Upload | None
    json: object
    retry_ok: bool | None
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
    content: Content | None = None,
    json: object = None,
    idempotent: bool = False,
    deadline: float | Default | None = DEFAULT,
    cache: bool | None = None,
    **unknown: object,
) -> tuple[CallArgs, bool | None]:
    """A verb's keywords (``RequestOptions``) as the loop's arguments, and the call's ``cache`` choice;
    the one place both clients read them, so the query and the body are prepared once, the same for
    every backend (a bad one raises here, before any try)."""
    if unknown:
        raise _unknown_keyword(method, unknown)
    sent, retry_ok = prepare_headers(headers, idempotent)
    body: Upload | None = None
    if content is not None or json is not None or method not in _BODILESS:
        body, sent = request_body(method, content, json, sent)
        if body is not None and body.__class__ is OneShot:
            retry_ok = None  # type: ignore[assignment]
    if params is not None:
        url = with_params(url, params)
    url = wire_known(url) or wire_new(url)  # wire_url, inlined: no frame on a memo hit
    if url.__class__ is Credentialed:  # user:password@ in the URL: sent as aiohttp sends them
        sent = url_credentials(url, sent)
        url = str(url)
    # tuple.__new__ straight: a NamedTuple's own __new__ is a Python function, a frame on every request.
    args = _tuple_new(CallArgs, (method, url, None, sent, body, None, retry_ok, deadline, stream))
    return args, cache


_BODILESS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def _unknown_keyword(method: str, unknown: Mapping[str, object]) -> TypeError:
    """The error of a keyword no verb takes, named by the public call, not by ``call_args``."""
    name = next(iter(unknown))
    hint = ""
    if name == "data":
        hint = (
            ": the body is content= (bytes, str, a file or an iterable of bytes) or json=; aiohttp's data= "
            "is not taken (a dict would be a form, which content= takes encoded: "
            "urllib.parse.urlencode(fields) with Content-Type: application/x-www-form-urlencoded)"
        )
    expected = ", ".join(sorted(RequestOptions.__annotations__))
    return TypeError(
        f"{method.lower()}() got an unexpected keyword argument {name!r}{hint}; the keywords are {expected}"
    )


def httpx_request(
    httpx: Any, method: str, url: str, params: Any, headers: Any, content: Any, json: Any, timeout: Any
) -> Any:
    """The httpx request of one attempt, as both clients send it over an httpx transport: our default
    headers under the caller's (case-insensitively: the caller's value replaces ours), and the attempt's
    timeouts in its extensions (where httpcore reads them)."""
    merged = httpx.Headers(DEFAULT_HEADERS)
    if headers:
        try:
            merged.update(headers)
        except UnicodeEncodeError:
            # aiohttp sends a non-ASCII value UTF-8 encoded, where httpx raises: send it as aiohttp does.
            merged.update(httpx.Headers(headers, encoding="utf-8"))
    return httpx.Request(
        method,
        url,
        params=params,
        headers=merged,
        content=content,
        json=json,
        extensions={"timeout": timeout},
    )
