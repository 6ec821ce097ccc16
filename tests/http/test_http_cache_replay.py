"""The response cache against real hits: list params, replayed headers, compute seconds saved, counted
failures. Over the ``make_api`` matrix (aiohttp, PerfClient, httpx) and a real FaultServer."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from infra.http import HttpCacheConfig

cache_mod = pytest.importorskip("infra.cache")

ON = HttpCacheConfig(enabled=True)
#: Not replayed, by design (hop-by-hop, and one client's cookie): see _caching._DROP.
NOT_REPLAYED = {"connection", "keep-alive", "transfer-encoding", "set-cookie"}


@pytest.fixture
def store(tmp_path: Path) -> Any:
    from infra.cache import Cache
    from infra.cache import CacheConfig as StoreSettings

    c = Cache(StoreSettings(path=str(tmp_path / "cache.db")), export_metrics=False)
    yield c
    c.close()


def k() -> str:
    return uuid.uuid4().hex[:12]


async def test_repeated_key_params_are_cached(make_api: Any, server: Any, store: Any) -> None:
    """params as pairs with a repeated key: keyed on the query sent (it raised AttributeError in the key and
    went to the network every time); the same query spelled as a list value shares the entry."""
    api = make_api(cache=ON, cache_store=store)
    key = k()
    url = f"{server.url}/echo/{key}"
    first = await api.get(url, params=[("lang", "en"), ("lang", "fr")])
    second = await api.get(url, params=[("lang", "en"), ("lang", "fr")])
    third = await api.get(url, params={"lang": ["en", "fr"]})
    other = await api.get(url, params=[("lang", "fr"), ("lang", "en")])
    assert (first.from_cache, second.from_cache, third.from_cache, other.from_cache) == (
        False,
        True,
        True,
        False,
    )
    assert server.hits[f"echo/{key}"] == 2
    assert store.namespace_stats("http")["errors"] == 0


async def test_a_hit_replays_the_original_headers(make_api: Any, server: Any, store: Any) -> None:
    """Content-Length and Date come back on a hit (a reader of r.headers["content-length"] got KeyError on
    hits only); every header a caller could read on the original is there, but the hop-by-hop ones."""
    api = make_api(cache=ON, cache_store=store)
    url = f"{server.url}/ok?size=1000&x={k()}"
    first = await api.get(url)
    hit = await api.get(url)
    assert hit.from_cache and not first.from_cache
    assert hit.headers["content-length"] == first.headers["content-length"] == "1000"
    assert hit.headers["date"] == first.headers["date"]
    original = sorted((n.lower(), v) for n, v in first.headers.raw_items() if n.lower() not in NOT_REPLAYED)
    assert sorted((n.lower(), v) for n, v in hit.headers.raw_items()) == original


async def test_hits_count_the_fetch_time_saved(make_api: Any, server: Any, store: Any) -> None:
    """Each hit saves the time the original fetch took (it was stored without a cost: always 0.0)."""
    api = make_api(cache=ON, cache_store=store)
    url = f"{server.url}/ok?delay=0.05&x={k()}"
    await api.get(url)
    for _ in range(2):
        assert (await api.get(url)).from_cache
    stats = store.namespace_stats("http")
    assert stats["hits"] == 2
    assert stats["compute_seconds_saved"] >= 2 * 0.05


async def test_a_failing_cache_is_counted_where_its_other_counts_are(
    make_api: Any, server: Any, tmp_path: Path
) -> None:
    """A cache whose reads fail: the request still goes out, and the failure shows in the namespace's
    errors (get_stats / /metrics read those), by reason, not only in a module global."""
    from infra.cache import Cache
    from infra.cache import CacheConfig as StoreSettings

    class Broken(Cache):
        def get(self, *a: Any, **kw: Any) -> Any:
            raise OSError("disk gone")

        async def aget(self, *a: Any, **kw: Any) -> Any:
            raise OSError("disk gone")

    store = Broken(StoreSettings(path=str(tmp_path / "broken.db")), export_metrics=False)
    try:
        api = make_api(cache=ON, cache_store=store)
        key = k()
        for _ in range(2):
            assert (await api.get(f"{server.url}/echo/{key}")).status == 200
        assert server.hits[f"echo/{key}"] == 2
        stats = store.namespace_stats("http")
        assert stats["errors_by_reason"] == {"http_lookup": 2}
        assert stats["errors"] == 2
    finally:
        store.close()
