"""Calls to the HTTP clients' public verbs with a misspelled keyword: each must be a mypy error.

Not run, only type-checked by test_typing.py: every ``# type: ignore[call-arg]`` below must be used, so
a verb whose signature stops catching the typo (an ``Any``-typed factory, ``**kwargs: Any``) fails it.
"""

from __future__ import annotations

from infra.http import AsyncPerfClient, HttpConfig, PerfClient, RetryConfig


async def async_verbs(c: AsyncPerfClient) -> None:
    await c.request("GET", "u", tmeout=3)  # type: ignore[call-arg]
    await c.get("u", tmeout=3)  # type: ignore[call-arg]
    await c.head("u", param={})  # type: ignore[call-arg]
    await c.options("u", header={})  # type: ignore[call-arg]
    await c.post("u", jsn={})  # type: ignore[call-arg]
    await c.put("u", contnet=b"")  # type: ignore[call-arg]
    await c.patch("u", idempotnet=True)  # type: ignore[call-arg]
    await c.delete("u", dedline=1.0)  # type: ignore[call-arg]
    c.stream("GET", "u", cache=True)  # type: ignore[call-arg]
    AsyncPerfClient(HttpConfig(), verfy=False)  # type: ignore[call-arg]
    AsyncPerfClient.from_config(None, cache_stor=None)  # type: ignore[call-arg]


def sync_verbs(c: PerfClient) -> None:
    c.request("GET", "u", tmeout=3)  # type: ignore[call-arg]
    c.get("u", tmeout=3)  # type: ignore[call-arg]
    c.head("u", param={})  # type: ignore[call-arg]
    c.options("u", header={})  # type: ignore[call-arg]
    c.post("u", jsn={})  # type: ignore[call-arg]
    c.put("u", contnet=b"")  # type: ignore[call-arg]
    c.patch("u", idempotnet=True)  # type: ignore[call-arg]
    c.delete("u", dedline=1.0)  # type: ignore[call-arg]
    c.stream("GET", "u", cache=True)  # type: ignore[call-arg]
    PerfClient(HttpConfig(), verfy=False)  # type: ignore[call-arg]


def settings() -> None:
    RetryConfig(attemps=2)  # type: ignore[call-arg]
    HttpConfig(max_per_hst=2)  # type: ignore[call-arg]
