"""Fixtures for the shared cache backends: a dedicated PostgreSQL database for the session, a unique table /
key prefix per test, our own redis-server and a TCP proxy for the outage tests."""

from __future__ import annotations

import asyncio
import secrets
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.cache.backends.base import CacheBackend

from ._servers import RedisServer, TcpProxy


def _with_db(dsn: str, db: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path="/" + db))


@pytest.fixture(scope="session")
def pg_cache_dsn(postgres_dsn: str) -> Iterator[str]:
    """A database of its own for this session (CREATE DATABASE, dropped at the end)."""
    import asyncpg

    name = f"infra_cb_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield _with_db(postgres_dsn, name)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


#: The store budget of backends built by the fixtures: 20x the 50 ms default, so the contract tests (which
#: are about what a store does, not how fast) hold on a loaded 2-core box; the outage tests pass their own.
TEST_BUDGET = 1.0


def unique_prefix() -> str:
    return "t" + secrets.token_hex(5)


@pytest.fixture
def make_pg(pg_cache_dsn: str) -> Iterator[Callable[..., Any]]:
    """Build PostgresBackends on a fresh table prefix (closed at the end of the test)."""
    from infra.cache.backends.postgres import PostgresBackend

    made: list[CacheBackend] = []
    prefix = unique_prefix()

    def make(**kw: Any) -> PostgresBackend:
        kw.setdefault("dsn", pg_cache_dsn)
        kw.setdefault("table", prefix)
        kw.setdefault("budget", TEST_BUDGET)
        b = PostgresBackend(**kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture
def make_redis(redis_url: str) -> Iterator[Callable[..., Any]]:
    """Build RedisBackends on a fresh key prefix in db 15 (keys deleted at the end of the test)."""
    import redis

    from infra.cache.backends.redis import RedisBackend

    made: list[CacheBackend] = []
    prefix = unique_prefix()

    def make(**kw: Any) -> RedisBackend:
        kw.setdefault("url", redis_url)
        kw.setdefault("prefix", prefix)
        kw.setdefault("budget", TEST_BUDGET)
        b = RedisBackend(**kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()
    r = redis.Redis.from_url(redis_url)
    keys = list(r.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        r.delete(*keys)
    r.close()


@pytest.fixture(params=["postgres", "redis"])
def make_backend(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Each contract test runs against both shared backends."""
    return request.getfixturevalue("make_pg" if request.param == "postgres" else "make_redis")  # type: ignore[no-any-return]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pg_proxy(postgres_dsn: str) -> Iterator[TcpProxy]:
    parts = urllib.parse.urlsplit(postgres_dsn)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    yield proxy
    proxy.close()


def via_proxy(dsn: str, proxy: TcpProxy) -> str:
    parts = urllib.parse.urlsplit(dsn)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))
