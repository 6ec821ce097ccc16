"""The client's settings (from keywords or the process config), which transport carries each origin
(HTTP/2 or not), and the httpx transports both clients build."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import math
import operator
import re
import ssl
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeAlias, TypedDict
from urllib.parse import quote_plus

from infra.config.sections import http as section
from infra.config.sections.http import HttpConfig
from infra.http._body import Content, OneShot, Upload, request_body
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
    "areset_h2_stream",
    "async_backend_for",
    "backend_for",
    "build_settings",
    "call_args",
    "httpx_request",
    "httpx_transport",
    "native_http2",
    "require_pyreqwest",
    "reset_h2_stream",
    "settings_of",
    "tls_context",
    "transport_pool",
    "unread_h2_stream",
    "url_credentials",
    "uses_http2",
    "wire_url",
    "with_params",
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


#: One query value: a str as it is, an int or a float as ``str(value)``; any other exact integer
#: (``numbers.Integral``, numpy's int64: ``operator.index``) as the int. Other numbers (numpy's float32,
#: Decimal) are refused: aiohttp (yarl) would send them truncated, ``int(value)``.
ParamValue: TypeAlias = str | int | float
#: Query parameters: a mapping of names to a value or a list / tuple of values (a repeated key), or a
#: sequence of (name, value) pairs. Appended to the URL's own query, as aiohttp does, on every backend
#: (``with_params``). bool and None are refused (TypeError naming the key, before any try): a query has no
#: one spelling for them (aiohttp refuses them; httpx sent "true" and an empty value).
Params: TypeAlias = Mapping[str, ParamValue | Sequence[ParamValue]] | Sequence[tuple[str, ParamValue]]

# yarl's query quoting (aiohttp's): space as "+", these sub-delimiters and "/:?@" left as they are, so the
# query aiohttp sent for ``params`` is byte for byte what every backend sends now (httpx leaves it as is).
_QUERY_SAFE = "!$'()*,/:?@"
_plain = re.compile(r"[A-Za-z0-9_.~!$'()*,/:?@-]*").fullmatch  # needs no quoting (most names and values)


def _quote(text: str) -> str:
    return text if _plain(text) else quote_plus(text, safe=_QUERY_SAFE)


def _query_value(key: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        raise TypeError(
            f"query parameter {key!r} is {value!r}: bool and None have no one spelling in a query string; "
            "pass a str ('true', '1', '') or leave the key out"
        )
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):  # numpy's float64 too (a float subclass)
        if not math.isfinite(value):
            raise TypeError(f"query parameter {key!r} is {value!r}: not a finite number")
        return str(float(value))
    index = getattr(type(value), "__index__", None)
    if index is not None:  # any exact integer (numbers.Integral: numpy's int64, ...), duck-typed
        try:
            return str(operator.index(value))  # type: ignore[arg-type]
        except TypeError:  # numpy's bool has __index__ and refuses it: a bool, refused above
            raise TypeError(
                f"query parameter {key!r} is {value!r}: bool has no one spelling in a query string; "
                "pass a str ('true', '1', '') or leave the key out"
            ) from None
    raise TypeError(
        f"query parameter {key!r}: expected str, int or float, got {type(value).__name__} "
        "(convert it yourself, e.g. str(v) or float(v): aiohttp sends int(v) for such a value, "
        "truncating a float32 0.7 or a Decimal to 0)"
    )


def encode_params(params: Params | str) -> str:
    """``params`` as an encoded query string (no "?"): pairs in the order given, a list / tuple value as
    the key repeated, keys and values quoted as aiohttp (yarl) quotes them. A str is taken as already
    encoded. Raises TypeError for a value that isn't str, int or float."""
    if isinstance(params, str):
        return params.lstrip("?")
    items = params.items() if params.__class__ is dict or isinstance(params, Mapping) else params
    parts: list[str] = []
    value: Any  # checked below by exact class, which mypy doesn't narrow on
    for item in items:
        try:
            key, value = item
        except (TypeError, ValueError):
            raise TypeError(f"params: expected (name, value) pairs, got {item!r}") from None
        if key.__class__ is not str and not isinstance(key, str):
            raise TypeError(f"query parameter names are str, got {key!r}")
        cls = value.__class__
        if cls is str:  # the common cases first, without a call
            parts.append(f"{_quote(key)}={_quote(value)}")
        elif cls is int:
            parts.append(f"{_quote(key)}={value}")
        elif cls is list or cls is tuple or isinstance(value, (list, tuple)):
            name = _quote(key)
            for one in value:
                parts.append(f"{name}={_quote(_query_value(key, one))}")
        else:
            parts.append(f"{_quote(key)}={_quote(_query_value(key, value))}")
    return "&".join(parts)


def with_params(url: str, params: Params | str | None) -> str:
    """``url`` with ``params`` appended to its own query (``?a=1`` + ``{"b": 2}`` -> ``?a=1&b=2``), as
    aiohttp merges them; the one reading of ``params`` every backend sends (and the cache keys on)."""
    if params is None:
        return url
    query = encode_params(params)
    if not query:
        return url
    url, hash_, fragment = url.partition("#")
    if "?" not in url:
        url += "?"
    elif not url.endswith(("?", "&")):
        url += "&"
    return url + query + hash_ + fragment


# A URL every backend already sends as aiohttp does, left as it is: http(s), a plain host (no userinfo, IPv6
# or IDNA), a path and query of characters yarl leaves as they are (unreserved, sub-delimiters, ":@/", and
# "?" in the query) and of %XX escapes it keeps (upper-case hex, of a byte it would not decode: a control,
# space, '"#%+<>[\]^`{|}', DEL, a non-ASCII byte; "/?" in the path, "&;=" in the query: what
# encode_params writes), no "#", and, checked apart, no empty "?" (yarl drops it) and no "/." (a dot
# segment, which yarl removes). A test holds it to yarl byte by byte.
_ESC = "[01][0-9A-F]|2[0235B]|3[CE]|5[B-E]|60|7[B-DF]|[89A-F][0-9A-F]"  # %XX of these: kept by yarl
_PATH_CHAR = "[A-Za-z0-9_.~!$&'()*+,;=:@/-]"
_QUERY_CHAR = "[A-Za-z0-9_.~!$&'()*+,;=:@/?-]"
_plain_url = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::[0-9]+)?"
    rf"(?:/{_PATH_CHAR}*(?:%(?:{_ESC}|2F|3F){_PATH_CHAR}*)*)?"
    rf"(?:\?{_QUERY_CHAR}*(?:%(?:{_ESC}|26|3[BD]){_QUERY_CHAR}*)*)?"
).fullmatch
# First, a character no such URL has (non-ASCII, space, '"#<>[\]^`{|}', a control): found at once, where a
# failing fullmatch above backtracks through every "*" (~10x the time).
_unplain_char = re.compile(r"[^A-Za-z0-9_.~!$&'()*+,;=:@/?%-]").search
# URL -> what it is sent as: looked up first on every call, a dict hit (bench_http_layer.py --callgrind
# seq: +0.37k instructions a request, 45.56k -> 45.93k; a regex on every call had cost +3.7k). Bounded: past
# it a new URL is checked each time (~1 µs if plain; one yarl parse, a few µs, if not).
_wire_memo: dict[str, str] = {}
_wire_known = _wire_memo.get
_WIRE_MEMO_MAX = 1024


def wire_url(url: str) -> str:
    """``url`` as aiohttp sends it, for every backend to send: yarl's reading (``URL(url)``, what a plain
    ``aiohttp.ClientSession`` does with a str) of the path and query, quoted: a space as %20 in the path and
    "+" in the query, non-ASCII UTF-8 percent-encoded, ``"<>\\^`{|}[]`` encoded, a stray "%" as %25, %XX
    upper-cased and unreserved ones decoded, dot segments removed, an empty "?" dropped; the host IDNA
    encoded, a default port dropped, the fragment (never sent) left out; ``user:password@`` taken out, for
    ``call_args`` to send as aiohttp does (``url_credentials``). httpx and reqwest take that string
    as it is (httpx would send a space in the query as %20, "|" and "%" raw; reqwest "|" raw), so the server
    sees the same request-target from each; yarl parses it back to itself, so aiohttp sends what it did.
    A plain URL (``_plain_url``, most) is returned as it is, yarl never run; each answer is memoised.

    Raises ValueError, before any try and on every backend, for a URL yarl refuses (a port out of range, a
    broken IPv6 literal, no host, a backslash in the host), as a plain aiohttp session refuses it
    (``InvalidUrlClientError``, a ValueError); httpx and reqwest each failed their own way, or sent it."""
    return _wire_known(url) or _wire_new(url)


class _Credentialed(str):
    """A wire URL whose caller's URL had ``user:password@``: the URL without them, and ``authorization``,
    the Basic header aiohttp sends for them (``url_credentials``)."""

    authorization: str


def _wire_new(url: str) -> str:
    if _unplain_char(url) is None and _plain_url(url) is not None and "/." not in url and url[-1] != "?":
        wire = url
    else:
        from yarl import URL

        try:
            parsed = URL(url)
            if parsed.raw_fragment:
                parsed = parsed.with_fragment(None)
            if parsed.raw_user is not None or parsed.raw_password is not None:
                wire = _credentialed(parsed)
            else:
                wire = str(parsed)
        except ValueError as exc:  # yarl's messages name the problem, never the path or query
            raise ValueError(f"invalid URL: {str(exc).removeprefix('Invalid URL: ')}") from None
    if len(_wire_memo) < _WIRE_MEMO_MAX:
        _wire_memo[url] = wire
    return wire


def _credentialed(parsed: Any) -> _Credentialed:
    """aiohttp's reading (``strip_auth_from_url``, ``encode_basic_auth``): the decoded user and password,
    latin-1, as Basic; a user with ":" refused (the ValueError aiohttp raises)."""
    user, password = parsed.user or "", parsed.password or ""
    if ":" in user:
        raise ValueError('A ":" is not allowed in login (RFC 7617#section-2)')
    try:
        creds = f"{user}:{password}".encode("latin-1")
    except UnicodeEncodeError:  # aiohttp raises it, with the character: not that part of a secret here
        raise ValueError("its user or password has a character latin-1 can't encode") from None
    wire = _Credentialed(parsed.with_user(None))
    wire.authorization = "Basic " + base64.b64encode(creds).decode("ascii")
    return wire


def url_credentials(url: str, headers: Mapping[str, str] | None) -> Mapping[str, str]:
    """``headers`` with the Authorization aiohttp sends for a URL's ``user:password@`` (Basic, from the
    decoded user and password): every backend sends it, and the URL without them (httpx's transports sent
    none; reqwest did). Raises aiohttp's ValueError when ``headers`` have an Authorization of their own."""
    if headers and any(k.lower() == "authorization" for k in headers):
        raise ValueError(
            "Cannot combine AUTHORIZATION header with AUTH argument or credentials encoded in URL"
        )
    out = dict(headers) if headers else {}
    out["Authorization"] = url.authorization  # type: ignore[attr-defined]
    return out


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


def unread_h2_stream(resp: Any) -> tuple[Any, int, Any] | None:
    """(httpcore's HTTP/2 connection, the stream id, the request) of an httpx response whose body was not
    read to its end, for ``reset_h2_stream``; None for HTTP/1.1, or where httpcore isn't as expected.

    httpcore (1.0) closes such a response without telling the server: no RST_STREAM, so the stream
    stays open at the server (which keeps sending: an LLM stream the caller broke out of runs on) and in
    h2's count of open streams. Once the server's SETTINGS_MAX_CONCURRENT_STREAMS (100) of them pile up,
    every new request on that connection fails with "Max outbound streams is 100, 100 open" until the
    server ends them (plain httpx: 3 rounds of 40 streams left after their first chunk, then every call
    failed). Like ``transport_pool``, a seam into httpx's internals (httpx's response stream, httpcore's
    pool stream, its HTTP/2 stream's connection), read defensively."""
    stream_id = resp.extensions.get("stream_id")  # httpcore's HTTP/2 responses carry their stream id
    if stream_id is None:
        return None
    stream = getattr(getattr(getattr(resp, "stream", None), "_httpcore_stream", None), "_stream", None)
    if stream is None or getattr(stream, "_closed", True):
        return None
    conn = getattr(stream, "_connection", None)
    if getattr(conn, "_h2_state", None) is None:
        return None
    return conn, stream_id, resp.request


def _reset(conn: Any, stream_id: int) -> bool:
    """RST_STREAM(CANCEL) queued in the connection's h2 state; False when h2 has closed the stream."""
    try:
        conn._h2_state.reset_stream(stream_id, error_code=8)  # CANCEL
    except Exception:  # closed meanwhile (ended, reset by the server, connection gone)
        return False
    return True


async def areset_h2_stream(unread: tuple[Any, int, Any]) -> None:
    """Reset an unread HTTP/2 stream (``unread_h2_stream``) and send the frame under httpcore's write
    lock (its write timeout read from the request's extensions); best effort, nothing raised."""
    conn, stream_id, request = unread
    if _reset(conn, stream_id):
        with contextlib.suppress(Exception):
            await conn._write_outgoing_data(request)


def reset_h2_stream(unread: tuple[Any, int, Any]) -> None:
    """``areset_h2_stream`` for the sync client's httpcore."""
    conn, stream_id, request = unread
    if _reset(conn, stream_id):
        with contextlib.suppress(Exception):
            conn._write_outgoing_data(request)


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
    url = _wire_known(url) or _wire_new(url)  # wire_url, inlined: no frame on a memo hit
    if url.__class__ is _Credentialed:  # user:password@ in the URL: sent as aiohttp sends them
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
