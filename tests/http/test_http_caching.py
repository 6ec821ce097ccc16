"""Response caching through infra.cache: off by default, GET and deterministic POST, keys per account."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from infra.http import HttpCacheConfig

cache_mod = pytest.importorskip("infra.cache")


@pytest.fixture
def store(tmp_path: Path):
    from infra.cache import Cache
    from infra.cache import CacheConfig as StoreSettings

    c = Cache(StoreSettings(path=str(tmp_path / "cache.db")), export_metrics=False)
    yield c
    c.close()


def k() -> str:
    return uuid.uuid4().hex[:12]


async def test_caching_is_off_by_default(make_api, server, store) -> None:
    api = make_api(cache_store=store)
    key = k()
    for _ in range(3):
        await api.get(f"{server.url}/echo/{key}")
    assert server.hits[f"echo/{key}"] == 3


async def test_get_is_served_from_cache_when_enabled(make_api, server, store) -> None:
    """The second identical GET is a cache hit: same status, headers and body, no request sent."""
    api = make_api(cache=HttpCacheConfig(enabled=True), cache_store=store)
    key = k()
    first = await api.get(f"{server.url}/echo/{key}")
    second = await api.get(f"{server.url}/echo/{key}")
    assert server.hits[f"echo/{key}"] == 1
    assert second.from_cache and not first.from_cache
    assert (second.status, second.content, second.headers["content-type"]) == (
        first.status,
        first.content,
        first.headers["content-type"],
    )
    assert second.json()["n"] == 1


async def test_the_fragment_is_not_part_of_the_key(make_api, server, store) -> None:
    """A fragment is never sent, so "/x?id=1#frag" is the cached "/x?id=1" request: a hit, not a fetch."""
    api = make_api(cache=HttpCacheConfig(enabled=True), cache_store=store)
    key = k()
    first = await api.get(f"{server.url}/echo/{key}?id=x")
    second = await api.get(f"{server.url}/echo/{key}?id=x#frag")
    third = await api.get(f"{server.url}/echo/{key}#other", params={"id": "x"})
    assert server.hits[f"echo/{key}"] == 1
    assert not first.from_cache and second.from_cache and third.from_cache


async def test_one_request_however_its_url_was_quoted(make_api, server, store) -> None:
    """The key is the URL as sent: "?q=a b", "?q=a+b" and ``params={"q": "a b"}`` are one request (aiohttp
    sends "q=a+b" for each): hits, not second fetches."""
    api = make_api(cache=HttpCacheConfig(enabled=True), cache_store=store)
    key = k()
    first = await api.get(f"{server.url}/echo/{key}?q=a b")
    again = [
        await api.get(f"{server.url}/echo/{key}?q=a+b"),
        await api.get(f"{server.url}/echo/{key}", params={"q": "a b"}),
    ]
    assert server.hits[f"echo/{key}"] == 1
    assert not first.from_cache and all(r.from_cache for r in again)


async def test_authorization_separates_entries(make_api, server, store) -> None:
    """Two accounts never share an entry: the key includes a hash of the Authorization header."""
    api = make_api(cache=HttpCacheConfig(enabled=True), cache_store=store)
    key = k()
    a = await api.get(f"{server.url}/echo/{key}", headers={"Authorization": "Bearer alice"})
    b = await api.get(f"{server.url}/echo/{key}", headers={"Authorization": "Bearer bob"})
    a2 = await api.get(f"{server.url}/echo/{key}", headers={"Authorization": "Bearer alice"})
    assert server.hits[f"echo/{key}"] == 2
    assert a.json()["n"] == 1 and b.json()["n"] == 2 and a2.json()["n"] == 1


async def test_post_cached_only_on_deterministic_routes(make_api, server, store) -> None:
    """POST is cached, keyed on the body hash, only where the route is marked deterministic."""
    det = k()
    settings = HttpCacheConfig(enabled=True, deterministic_routes=(f"/echo/{det}",))
    api = make_api(cache=settings, cache_store=store)
    for _ in range(2):
        await api.post(f"{server.url}/echo/{det}", json={"text": "hello"})
    await api.post(f"{server.url}/echo/{det}", json={"text": "other"})
    assert server.hits[f"echo/{det}"] == 2  # same body hit; a different body went out
    other = k()
    for _ in range(2):
        await api.post(f"{server.url}/echo/{other}", json={"text": "hello"})
    assert server.hits[f"echo/{other}"] == 2  # not deterministic: never cached


async def test_failures_are_not_cached(make_api, server, store) -> None:
    api = make_api(cache=HttpCacheConfig(enabled=True), cache_store=store)
    for _ in range(2):
        assert (await api.get(f"{server.url}/status/404")).status == 404
    assert server.hits["status/404"] >= 2


async def test_cache_failure_fails_open(make_api, server) -> None:
    """A broken cache store never changes the response: the request goes to the network."""

    class Broken:
        def get(self, *a, **kw):
            raise RuntimeError("store down")

        async def aget(self, *a, **kw):
            raise RuntimeError("store down")

        def set(self, *a, **kw):
            raise RuntimeError("store down")

        async def aset(self, *a, **kw):
            raise RuntimeError("store down")

    api = make_api(cache=HttpCacheConfig(enabled=True), cache_store=Broken())
    key = k()
    r = await api.get(f"{server.url}/echo/{key}")
    assert r.status == 200 and r.json()["n"] == 1


def test_keys_hold_no_secret() -> None:
    """The key is a SHA-256 hex digest: no URL, query or credential readable in it."""
    from infra.http._caching import cache_key

    key = cache_key(
        "GET", "http://h:1/x?api_key=SECRET", None, {"Authorization": "Bearer TOKEN"}, None, None, "http"
    )
    assert len(key) == 64 and "SECRET" not in key and "TOKEN" not in key
    other = cache_key(
        "GET", "http://h:1/x?api_key=SECRET", None, {"Authorization": "Bearer OTHER"}, None, None, "http"
    )
    assert key != other


@pytest.mark.parametrize(
    "header", ["X-Auth-Token", "X-Goog-Api-Key", "Api-Token", "Private-Token", "X-Tenant", "Accept-Language"]
)
async def test_every_request_header_separates_entries(make_api, store, header: str) -> None:
    """Secure by default: a header the cache knows nothing about (a credential of any name, a tenant) is part
    of the key, so user B never gets user A's cached response (it did for these four credential headers)."""
    from infra.testing.fault_server import FaultServer

    api = make_api(cache=HttpCacheConfig(enabled=True), cache_store=store)
    with FaultServer() as own:
        a = await api.get(f"{own.url}/headers", headers={header: "alice"})
        b = await api.get(f"{own.url}/headers", headers={header: "bob"})
        a2 = await api.get(f"{own.url}/headers", headers={header: "alice"})
        assert own.hits["headers"] == 2
        assert a.json()[header.lower()] == "alice" and not a.from_cache
        assert b.json()[header.lower()] == "bob" and not b.from_cache
        assert a2.from_cache and a2.json()[header.lower()] == "alice"


async def test_per_request_ids_and_trace_context_stay_out_of_the_key(make_api, store) -> None:
    """The documented short list (Idempotency-Key, request ids, trace context) doesn't split entries, and
    HttpCacheConfig.unkeyed_headers adds a caller's own: these calls all share one entry."""
    from infra.http._caching import UNKEYED_HEADERS
    from infra.testing.fault_server import FaultServer

    assert {"idempotency-key", "traceparent", "x-request-id"} <= UNKEYED_HEADERS
    assert "authorization" not in UNKEYED_HEADERS and len(UNKEYED_HEADERS) < 30
    settings = HttpCacheConfig(enabled=True, unkeyed_headers=("X-Sent-At",))
    api = make_api(cache=settings, cache_store=store)
    with FaultServer() as own:
        for i in range(4):
            trace = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
            headers = {"traceparent": trace, "X-Request-Id": str(i), "X-Sent-At": str(i), "X-Tenant": "t1"}
            r = await api.get(f"{own.url}/headers", headers=headers)
            assert r.from_cache == (i > 0)
        assert own.hits["headers"] == 1
