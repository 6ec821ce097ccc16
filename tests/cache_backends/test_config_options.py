"""``cache.postgres`` / ``cache.redis`` in perf_config reach the backends ``Cache`` builds (real servers)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from infra.cache import Cache, CacheConfig
from infra.config import load_config
from infra.errors import ConfigError

from .conftest import unique_prefix


@pytest.fixture(autouse=True)
def _signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFRA_TEST_SIGNING_KEY", "k" * 32)  # shared stores take signed values only


def _settings(tmp_path: Path, cache: dict[str, object]) -> CacheConfig:
    path = tmp_path / "perf_config.json"
    # (a store budget with margin for a loaded box: these tests are about the options, not speed)
    body = {"signing_key_env": "INFRA_TEST_SIGNING_KEY", "store_budget": "1s", **cache}
    path.write_text(json.dumps({"cache": body}))
    return load_config(path, use_env=False).cache


def test_postgres_options_from_perf_config_shape_the_tables(tmp_path: Path, pg_cache_dsn: str) -> None:
    import asyncpg

    prefix = unique_prefix()
    settings = _settings(
        tmp_path,
        {
            "backend": "postgres",
            "dsn": pg_cache_dsn,
            "postgres": {"table": prefix, "unlogged": True, "max_connections": 2, "op_timeout": "750ms"},
        },
    )
    cache = Cache(settings, export_metrics=False)
    try:
        cache.set("api", "k", "v")
        assert cache.get("api", "k") == "v"
        b = cache.backend
        assert b is not None and b.max_connections == 2 and b.op_timeout == 0.75  # type: ignore[attr-defined]

        async def persistence() -> str:
            conn = await asyncpg.connect(pg_cache_dsn)
            try:
                return await conn.fetchval(  # type: ignore[no-any-return]
                    "SELECT relpersistence::text FROM pg_class WHERE relname = $1", f"{prefix}_entries"
                )
            finally:
                await conn.close()

        assert asyncio.run(persistence()) == "u"  # UNLOGGED, under the configured name
    finally:
        cache.close()


def test_redis_prefix_from_perf_config_names_the_keys(tmp_path: Path, redis_url: str) -> None:
    import redis

    prefix = unique_prefix()
    settings = _settings(
        tmp_path, {"backend": "redis", "url": redis_url, "redis": {"prefix": prefix, "op_timeout": "1.5s"}}
    )
    cache = Cache(settings, export_metrics=False)
    r = redis.Redis.from_url(redis_url)
    try:
        cache.set("api", "k", "v")
        assert cache.get("api", "k") == "v"
        assert cache.backend is not None and cache.backend.op_timeout == 1.5  # type: ignore[attr-defined]
        keys = list(r.scan_iter(match=f"{prefix}:*"))
        assert keys, "nothing written under the configured prefix"
    finally:
        cache.close()
        for k in r.scan_iter(match=f"{prefix}:*"):
            r.delete(k)
        r.close()


@pytest.mark.parametrize(
    ("cache", "path"),
    [
        ({"postgres": {"table": "Robert'); DROP TABLE x;--"}}, "cache.postgres.table"),
        ({"postgres": {"max_connections": 0}}, "cache.postgres.max_connections"),
        ({"redis": {"prefix": "has space"}}, "cache.redis.prefix"),
        ({"redis": {"op_timeout": "soon"}}, "cache.redis.op_timeout"),
    ],
)
def test_bad_backend_options_are_named_by_json_path(
    tmp_path: Path, cache: dict[str, object], path: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _settings(tmp_path, cache)
    assert path in str(err.value)
