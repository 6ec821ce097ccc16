"""Calls to the HTTP clients' public verbs with a misspelled keyword (or a wrong type): each must be a mypy
error.

Not run, only type-checked by test_typing.py: every ``# type: ignore[...]`` below must be used, so a verb
whose signature stops catching the typo (an ``Any``-typed factory, ``**kwargs: Any``, ``-> Any``) fails it.
``well_typed_calls_stay_clean`` holds the calls a typed user writes: they carry no ignore and must pass.
"""

from __future__ import annotations

from infra.http import (
    AsyncPerfClient,
    AsyncStreamResponse,
    Headers,
    HttpConfig,
    JSONValue,
    PerfClient,
    Response,
    RetryConfig,
    StreamResponse,
)


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


class SyncReader:
    """A sync body reader, as ``StreamResponse`` takes one (``infra.http._response.BodyReader``)."""

    deadline_at: float | None = None

    def next_chunk(self) -> bytes:
        return b""

    def close(self) -> None:
        pass


def responses(r: Response, s: StreamResponse, body: SyncReader) -> None:
    Headers(sorce={})  # type: ignore[call-arg]
    Headers({"a": 1})  # type: ignore[dict-item]
    Headers().get("a", defualt="")  # type: ignore[call-overload]
    Headers().get("a").lower()  # type: ignore[union-attr]  # str | None: a missing header is None
    StreamResponse(200, Headers(), None, body=body)
    StreamResponse(200, Headers(), None, bdy=body)  # type: ignore[call-arg]
    AsyncStreamResponse(200, Headers(), None, body=body)  # type: ignore[arg-type]  # a sync reader
    # JSONValue, not Any: the caller narrows before indexing (httpx / requests would let this through)
    r.json()["choices"]  # type: ignore[index, call-overload]
    s.json() + 1  # type: ignore[operator]


def well_typed_calls_stay_clean(r: Response) -> None:
    """No ignore here: these must type-check as written."""
    ctype: str = r.headers.get("content-type", "")
    maybe: str | None = Headers([("a", "b")]).get("a")
    doc = r.json()
    if isinstance(doc, dict):
        choices = doc.get("choices")
        if isinstance(choices, list) and choices:
            first: JSONValue = choices[0]
            del first
    del ctype, maybe
