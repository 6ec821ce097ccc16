"""Response caching through infra.cache (off by default: ``HttpCacheConfig.enabled`` or ``cache=True``).

What is cached: 200 responses to GET, and to POST on routes marked deterministic (the same body always
gives the same answer: TTS of a text, embeddings), unless the response says ``Cache-Control: no-store``.
The key is a SHA-256 (``infra.cache.make_key``) over method, URL (with the call's params appended as
every backend sends them: ``_url.with_params``), body hash and a hash of the request headers. Secure
by default: *every* request header the caller sends is part of the key (hashed, so no secret is stored in
clear), except the few on ``UNKEYED_HEADERS``, known not to change the response (per-request ids and
trace context, which would make every key unique, and transport headers).
A list of known credential headers missed any it didn't know (``X-Auth-Token``, ``Private-Token``...) and
let two accounts share an entry. ``HttpCacheConfig.unkeyed_headers`` adds a caller's own per-request headers.
Cached value: ``{"status", "headers", "body"}`` (safe codec, no pickle); the time the fetch took is stored
as the entry's cost, so hits add to the namespace's ``compute_seconds_saved``. A hit's headers are the
original response's, less the hop-by-hop ones and Set-Cookie (``_DROP``). A body read from a file or a
stream is never cached (it can't be keyed without reading it).
Fail open: a cache error is counted (``failures`` here, and in the namespace's ``errors`` with reason
``http_key`` / ``http_lookup`` / ``http_store``, so get_stats() and /metrics show it), logged once, and the
request goes to the network.
The sync and async paths differ only in awaiting: what to look up, what a hit is and what to store is
decided once (``_Plan``).
"""

from __future__ import annotations

import hashlib
import json as _json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from infra.config.sections.http import HttpCacheConfig
from infra.http._origin import origin_of
from infra.http._response import Headers, Response
from infra.http._routing import CallArgs
from infra.http._url import Params, with_params

if TYPE_CHECKING:
    from infra.cache import Cache

__all__ = ["UNKEYED_HEADERS", "async_cached_request", "cache_key", "sync_cached_request"]

log = logging.getLogger("infra.http")
failures = 0
_logged = False

#: Request headers left out of the key: known not to change the response. Per-request ids and trace
#: context differ on every call (keyed, nothing would ever hit: Idempotency-Key is a fresh UUID per call);
#: the transport headers are derived from the URL and body, which are keyed themselves.
UNKEYED_HEADERS = frozenset(
    {
        # per-request identity and tracing
        "idempotency-key",
        "x-request-id",
        "x-correlation-id",
        "request-id",
        "traceparent",
        "tracestate",
        "baggage",
        "sentry-trace",
        "x-amzn-trace-id",
        "x-cloud-trace-context",
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
        # transport: framing and hop-by-hop
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "te",
        "date",
    }
)
#: Response headers a hit does not replay. The hop-by-hop ones (RFC 9110 7.6.1; RFC 9111 3.1 says a cache
#: must not store them) describe the connection the original came on, not the response: a replay comes on
#: none, and its body is whole bytes, so "Transfer-Encoding: chunked" would be false. Set-Cookie is one
#: client's session: replayed, it would hand that session to every caller sharing the entry. Everything
#: else a caller could read on the original is replayed as it was, Content-Length and Date included (Date is
#: when the origin made the response, which stays true of a copy).
_DROP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "set-cookie",
    }
)
_perf = time.perf_counter


def _failed(what: str, exc: BaseException, cache: Any = None, namespace: str = "") -> None:
    """Count a failure of the response cache: here, and in ``namespace``'s own error counts (reason
    ``http_<what>``) so get_stats() and /metrics show it beside its hits and misses (the namespace's
    stats log the first of each reason; only the exception's type, never its text, which may hold a URL)."""
    global failures, _logged
    failures += 1
    if cache is not None:
        try:
            cache.namespace_stats(namespace)  # makes the namespace's counters if this is its first use
            cache.namespace_counters()[namespace].error("http_" + what, RuntimeError(type(exc).__name__))
            return
        except Exception:  # counting must not fail the request: logged below instead
            pass
    if not _logged:
        _logged = True
        log.warning(
            "infra.http response cache %s failed (counted, request unaffected): %s", what, type(exc).__name__
        )


def _path(url: str) -> str:
    rest = url.split("://", 1)[-1]
    slash = rest.find("/")
    path = rest[slash:] if slash != -1 else "/"
    return path.split("?", 1)[0].split("#", 1)[0]


def _deterministic(url: str, routes: tuple[str, ...]) -> bool:
    path = _path(url)
    for route in routes:
        if route.endswith("*"):
            if path.startswith(route[:-1]) or url.startswith(route[:-1]):
                return True
        elif path == route or url.split("?", 1)[0] == route:
            return True
    return False


def cacheable(method: str, url: str, settings: HttpCacheConfig, force: bool | None) -> bool:
    """Whether this request may be answered from / stored in the cache."""
    if force is False:
        return False
    if method == "GET":
        return True
    return method == "POST" and (force is True or _deterministic(url, settings.deterministic_routes))


def cache_key(
    method: str,
    url: str,
    params: Params | None,
    headers: Mapping[str, str] | None,
    content: bytes | str | None,
    json: Any,
    namespace: str,
    unkeyed: frozenset[str] = frozenset(),
) -> str:
    """SHA-256 key: nothing in it (URL, body, header values) can be read back out.

    The URL and query are the ones the request sends (``params`` appended to the URL's own, ``with_params``,
    and quoted as aiohttp quotes it, ``wire_url``: "/a b" and "/a%20b" are one request; the fragment, which
    no request sends, left out), the body its bytes (``json`` encoded as ``_body.request_body`` encodes it).
    Every request header counts (names case-insensitively, values exactly) but those on
    ``UNKEYED_HEADERS`` and ``unkeyed`` (lower-case names)."""
    from infra.cache import make_key

    keyed = sorted(
        (k.lower(), str(v))
        for k, v in (headers or {}).items()
        if k.lower() not in UNKEYED_HEADERS and k.lower() not in unkeyed
    )
    # Length-prefixed, so no choice of names and values can make two header sets encode alike.
    encoded = "".join(f"{len(k)}:{k}{len(v)}:{v}" for k, v in keyed)
    identity = hashlib.sha256(encoded.encode("utf-8", "surrogatepass")).hexdigest() if keyed else ""
    if json is not None:
        body = _json.dumps(json).encode()
    elif isinstance(content, str):
        body = content.encode()
    else:
        body = content or b""
    # The fragment is never sent (a server can't answer by it): "/x?a=1#top" is "/x?a=1"'s request.
    url = with_params(url, params).partition("#")[0]
    return make_key(namespace, method, url, "", hashlib.sha256(body).hexdigest(), identity)


def _storable(response: Response) -> bool:
    if response.status != 200:
        return False
    cc = (response.headers.get("cache-control") or "").lower()
    return "no-store" not in cc


def _to_value(response: Response) -> dict[str, Any]:
    headers = [[k, v] for k, v in response.headers.raw_items() if k.lower() not in _DROP]
    return {"status": response.status, "headers": headers, "body": bytes(response.content)}


def _from_value(value: Any, response_args: dict[str, Any]) -> Response | None:
    if not isinstance(value, dict) or not isinstance(value.get("body"), (bytes, bytearray)):
        return None
    headers = Headers([(str(k), str(v)) for k, v in value.get("headers", [])])
    return Response(int(value["status"]), headers, bytes(value["body"]), from_cache=True, **response_args)


class _Plan:
    """What one cacheable request looks up and may store: decided here, so the sync and async paths only
    await (or not) the cache's get and set."""

    __slots__ = ("args", "cache", "key", "settings")

    def __init__(self, settings: HttpCacheConfig, args: dict[str, Any]) -> None:
        self.settings = settings
        self.args = args
        self.cache: Any = None
        self.key: str | None = None  # None: the lookup failed before a key was made; nothing is stored

    def found(self, value: object) -> Response | None:
        """The cached response a looked-up value makes (None: a miss, or a value we can't read)."""
        from infra.cache import MISSING

        return None if value is MISSING else _from_value(value, self.args)

    def value(self, response: Response) -> dict[str, Any] | None:
        """What to store for ``response``, or None when it isn't stored."""
        return _to_value(response) if self.key is not None and _storable(response) else None

    def failed(self, what: str, exc: BaseException) -> None:
        """The cache's get or set raised: counted in this namespace's errors; the request goes on."""
        _failed(what, exc, self.cache, self.settings.namespace)


def _plan(store: Cache | None, settings: HttpCacheConfig, args: CallArgs, force: bool | None) -> _Plan | None:
    """The plan for a request, or None when it isn't cacheable (it goes straight to the network)."""
    method, url, params, headers, content, json = args[:6]
    if not cacheable(method, url, settings, force):
        return None
    if content is not None and not isinstance(content, (bytes, str)):
        return None  # a file or a stream: keying it would mean reading it
    plan = _Plan(settings, {"url": url, "method": method, "origin": origin_of(url)})
    try:
        plan.cache = store if store is not None else _get_cache()
    except Exception as exc:
        _failed("lookup", exc)
        return plan
    try:
        unkeyed = frozenset(h.lower() for h in settings.unkeyed_headers)
        plan.key = cache_key(method, url, params, headers, content, json, settings.namespace, unkeyed)
    except Exception as exc:
        _failed("key", exc, plan.cache, settings.namespace)
    return plan


async def async_cached_request(
    store: Cache | None,
    settings: HttpCacheConfig,
    args: CallArgs,
    force: bool | None,
    send: Callable[[CallArgs], Awaitable[Response]],
) -> Response:
    """A response from the cache, or ``send(args)``'s (stored when storable)."""
    plan = _plan(store, settings, args, force)
    if plan is None:
        return await send(args)
    found = None
    if plan.key is not None:
        try:
            found = plan.found(await plan.cache.aget(settings.namespace, plan.key, _missing()))
        except Exception as exc:
            plan.failed("lookup", exc)
    if found is not None:
        return found
    t0 = _perf()
    response = await send(args)
    cost = _perf() - t0  # the fetch a hit saves: compute_seconds_saved
    value = plan.value(response)
    if value is not None:
        try:
            await plan.cache.aset(settings.namespace, plan.key, value, ttl=settings.ttl, cost=cost)
        except Exception as exc:
            plan.failed("store", exc)
    return response


def sync_cached_request(
    store: Cache | None,
    settings: HttpCacheConfig,
    args: CallArgs,
    force: bool | None,
    send: Callable[[CallArgs], Response],
) -> Response:
    """``async_cached_request`` without the awaiting: the plan decides, the two edges only call."""
    plan = _plan(store, settings, args, force)
    if plan is None:
        return send(args)
    found = None
    if plan.key is not None:
        try:
            found = plan.found(plan.cache.get(settings.namespace, plan.key, _missing()))
        except Exception as exc:
            plan.failed("lookup", exc)
    if found is not None:
        return found
    t0 = _perf()
    response = send(args)
    cost = _perf() - t0
    value = plan.value(response)
    if value is not None:
        try:
            plan.cache.set(settings.namespace, plan.key, value, ttl=settings.ttl, cost=cost)
        except Exception as exc:
            plan.failed("store", exc)
    return response


def _missing() -> object:
    from infra.cache import MISSING

    return MISSING


def _get_cache() -> Any:
    from infra.cache import get_cache

    return get_cache()
