"""Calls to the cache's public verbs with a misspelled keyword or a wrong type: each must be a mypy error (see
test_typing.py). ``well_typed_calls_stay_clean`` holds the calls a typed user writes: they carry no ignore."""

from __future__ import annotations

import dataclasses

from infra.cache import BackendStats, Cache, CacheConfig, cached, explain_key, make_key, register_type
from infra.cache.backends import create_backend
from infra.cache.backends.postgres import PostgresBackend
from infra.cache.backends.redis import RedisBackend


@dataclasses.dataclass
class Point:
    x: int
    y: int


async def cache_verbs(c: Cache) -> None:
    c.get("ns", "k", defualt=None)  # type: ignore[call-arg]
    c.set("ns", "k", 1, tll=5)  # type: ignore[call-arg]
    c.delete("ns", ky="k")  # type: ignore[call-arg]
    await c.aget("ns", "k", defualt=None)  # type: ignore[call-arg]
    await c.aset("ns", "k", 1, tll=5)  # type: ignore[call-arg]


def decorator() -> None:
    cached(namespace="n", tll=5)  # type: ignore[call-overload]


def keys_and_types() -> None:
    # make_key / explain_key take any named part (**named: object), so only their result is checked
    make_key("ns", "a", version=2).hex()  # type: ignore[attr-defined]
    explain_key("ns", "a")["kye"]  # type: ignore[typeddict-item]
    register_type(Point, encde=lambda p: [p.x])  # type: ignore[call-arg]
    register_type(Point, encode=lambda p: [p.y], decode=lambda v: 1)  # type: ignore[arg-type, return-value]
    BackendStats(entries=0, bytes=0, by_namespace={}, extr={})  # type: ignore[call-arg]


def backends(settings: CacheConfig) -> None:
    PostgresBackend.from_settings(settings, tabel="t")  # type: ignore[call-arg]
    RedisBackend.from_settings(settings, prefx="p")  # type: ignore[call-arg]
    create_backend(settings, op_timout=1.0)  # type: ignore[call-arg]
    create_backend(settings, table="t")  # type: ignore[call-arg]  # postgres-only: settings may name redis


def well_typed_calls_stay_clean(settings: CacheConfig) -> None:
    """No ignore here: these must type-check as written."""
    key: str = make_key("ns", Point(1, 2), [1.0], version=("v", 2), options={"k": None})
    schema: int = explain_key("ns", 1)["schema"]
    cls: type[Point] = register_type(Point, encode=lambda p: [p.x, p.y], decode=lambda v: Point(0, 0))
    PostgresBackend.from_settings(settings, dsn="postgresql://h/db", table="t", max_connections=2)
    RedisBackend.from_settings(settings, url="redis://h:6379/0", prefix="p", listen=False)
    create_backend(settings, op_timeout=1.0, namespace_max_bytes={"ns": 1 << 20})
    del key, schema, cls
