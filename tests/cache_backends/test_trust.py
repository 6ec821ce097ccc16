"""What a shared store may serve (issue 17 items 11, 12): without a signing key nothing from the store is
trusted, and a compressed row can't inflate past the store's own byte limit."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from infra.cache import Cache, CacheConfig
from infra.cache.backends.base import StoredEntry
from infra.cache.codecs import FLAG_ZLIB, JSON

pytestmark = pytest.mark.services

NS = "api"


def test_a_shared_store_without_a_signing_key_serves_no_forged_row(
    make_backend: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another client wrote an unsigned ``{'legit': 666}`` where our value belongs: without a key the
    store is not used at all (L1 only, said once in stats), so the forged row is never served."""
    monkeypatch.delenv("PERF_CACHE_SIGNING_KEY", raising=False)
    backend = make_backend()
    backend.set(NS, "k", StoredEntry(json.dumps({"legit": 666}).encode(), JSON))
    cache = Cache(CacheConfig(backend=backend.name), backend=backend, export_metrics=False)
    calls: list[int] = []
    try:
        assert cache.get(NS, "k", default="MISS") == "MISS"
        assert cache.get_or_compute(NS, "k", lambda: calls.append(1) or {"legit": 1}) == {"legit": 1}
        assert calls == [1]
        stats = cache.get_stats()
        assert "PERF_CACHE_SIGNING_KEY" in stats["backend_error"] and cache.backend is None
        # nothing was written to the store either: its rows could not be verified by anyone
        assert backend.get(NS, "k") == StoredEntry(json.dumps({"legit": 666}).encode(), JSON)
    finally:
        cache.close()


def test_a_signed_bomb_is_refused_past_the_namespace_cap(make_backend: Callable[..., Any]) -> None:
    """Even a row signed with our key (a trusted writer with other settings) can't make a read inflate more
    than the store's limit for the namespace."""
    backend = make_backend()
    settings = CacheConfig(backend=backend.name, max_bytes=4 * 1024**2)
    writer = Cache(
        CacheConfig(backend=backend.name, max_bytes=0),
        signing_key=b"k" * 32,
        backend=backend,
        export_metrics=False,
    )
    reader = Cache(settings, signing_key=b"k" * 32, backend=backend, export_metrics=False)
    try:
        writer.set(NS, "bomb", b"\0" * (40 * 1024**2))  # ~40 KB stored
        got = backend.get(NS, "bomb")
        assert got is not None and got.codec & FLAG_ZLIB and got.size < 400_000
        assert reader.get(NS, "bomb", default="MISS") == "MISS"
        assert reader.namespace_stats(NS)["errors"] >= 1
    finally:
        writer.close()
        reader.close()
