"""Response caching through infra.cache (off by default: ``HttpCacheConfig.enabled`` or ``cache=True``).

What is cached: 200 responses to GET, and to POST on routes marked deterministic (the same body always
gives the same answer: TTS of a text, embeddings), unless the response says ``Cache-Control: no-store``.
The key is a SHA-256 (``infra.cache.make_key``) over method, URL (query included), body hash and a hash of
the request headers. Secure by default: *every* request header the caller sends is part of the key
(hashed, so no secret is stored in clear), except the few on ``UNKEYED_HEADERS``, known not to change the
response (per-request ids and trace context, which would make every key unique, and transport headers).
A list of known credential headers missed any it didn't know (``X-Auth-Token``, ``Private-Token``...) and
let two accounts share an entry. ``HttpCacheConfig.unkeyed_headers`` adds a caller's own per-request headers.
Cached value: ``{"status", "headers", "body"}`` (safe codec, no pickle).
Fail open: a cache error is counted in ``failures``, logged once, and the request goes to the network.
The sync and async paths differ only in awaiting: what to look up, what a hit is and what to store is
decided once (``_Plan``).
"""

from __future__ import annotations

import hashlib
import json as _json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from infra.config.sections.http import HttpCacheConfig
from infra.http._origin import origin_of
from infra.http._response import Headers, Response
from infra.http._routing import CallArgs

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
#: Response headers not worth replaying from a cache.
_DROP = frozenset({"set-cookie", "connection", "keep-alive", "transfer-encoding", "date", "content-length"})


def _failed(what: str, exc: BaseException) -> None:
    global failures, _logged
    failures += 1
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
    params: Mapping[str, Any] | None,
    headers: Mapping[str, str] | None,
    content: bytes | str | None,
    json: Any,
    namespace: str,
    unkeyed: frozenset[str] = frozenset(),
) -> str:
    """SHA-256 key: nothing in it (URL, body, header values) can be read back out.

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
        body = _json.dumps(json, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    elif isinstance(content, str):
        body = content.encode()
    else:
        body = content or b""
    query = urlencode(sorted((str(k), str(v)) for k, v in params.items())) if params else ""
    return make_key(namespace, method, url, query, hashlib.sha256(body).hexdigest(), identity)


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


def _plan(store: Cache | None, settings: HttpCacheConfig, args: CallArgs, force: bool | None) -> _Plan | None:
    """The plan for a request, or None when it isn't cacheable (it goes straight to the network)."""
    method, url, params, headers, content, json = args[:6]
    if not cacheable(method, url, settings, force):
        return None
    plan = _Plan(settings, {"url": url, "method": method, "origin": origin_of(url)})
    try:
        plan.cache = store if store is not None else _get_cache()
        unkeyed = frozenset(h.lower() for h in settings.unkeyed_headers)
        plan.key = cache_key(method, url, params, headers, content, json, settings.namespace, unkeyed)
    except Exception as exc:
        _failed("lookup", exc)
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
    if plan.key is not None:
        try:
            found = plan.found(await plan.cache.aget(settings.namespace, plan.key, _missing()))
        except Exception as exc:
            _failed("lookup", exc)
        else:
            if found is not None:
                return found
    response = await send(args)
    value = plan.value(response)
    if value is not None:
        try:
            await plan.cache.aset(settings.namespace, plan.key, value, ttl=settings.ttl)
        except Exception as exc:
            _failed("store", exc)
    return response


def sync_cached_request(
    store: Cache | None,
    settings: HttpCacheConfig,
    args: CallArgs,
    force: bool | None,
    send: Callable[[CallArgs], Response],
) -> Response:
    """``async_cached_request`` without the awaiting."""
    plan = _plan(store, settings, args, force)
    if plan is None:
        return send(args)
    if plan.key is not None:
        try:
            found = plan.found(plan.cache.get(settings.namespace, plan.key, _missing()))
        except Exception as exc:
            _failed("lookup", exc)
        else:
            if found is not None:
                return found
    response = send(args)
    value = plan.value(response)
    if value is not None:
        try:
            plan.cache.set(settings.namespace, plan.key, value, ttl=settings.ttl)
        except Exception as exc:
            _failed("store", exc)
    return response


def _missing() -> object:
    from infra.cache import MISSING

    return MISSING


def _get_cache() -> Any:
    from infra.cache import get_cache

    return get_cache()
