"""Calls to the cache's public verbs with a misspelled keyword: each must be a mypy error (see
test_typing.py)."""

from __future__ import annotations

from infra.cache import Cache, cached


async def cache_verbs(c: Cache) -> None:
    c.get("ns", "k", defualt=None)  # type: ignore[call-arg]
    c.set("ns", "k", 1, tll=5)  # type: ignore[call-arg]
    c.delete("ns", ky="k")  # type: ignore[call-arg]
    await c.aget("ns", "k", defualt=None)  # type: ignore[call-arg]
    await c.aset("ns", "k", 1, tll=5)  # type: ignore[call-arg]


def decorator() -> None:
    cached(namespace="n", tll=5)  # type: ignore[call-overload]
