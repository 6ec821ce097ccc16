"""The response types' typed surface: what the stream responses pass on, ``Headers.get``, ``json()``."""

from __future__ import annotations

import inspect
import typing

from typing_extensions import Unpack

from infra.http import AsyncStreamResponse, Headers, Response, StreamResponse


def test_the_stream_responses_pass_on_exactly_responses_keywords() -> None:
    keyword_only = {
        name
        for name, p in inspect.signature(Response.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    for cls in (StreamResponse, AsyncStreamResponse):
        passed_on = typing.get_type_hints(cls.__init__, localns={"Unpack": Unpack})["response"]
        (keywords,) = typing.get_args(passed_on)  # Unpack[ResponseKeywords]
        assert set(typing.get_type_hints(keywords)) == keyword_only


def test_a_stream_response_keeps_what_it_was_built_with() -> None:
    r = StreamResponse(201, Headers({"A": "b"}), None, body=_Reader(), url="u", method="POST", origin="o")
    assert (r.status, r.headers["a"], r.url, r.method, r.origin) == (201, "b", "u", "POST", "o")
    assert not r.from_cache and isinstance(r, Response) and not hasattr(r, "__dict__")
    assert r.read() == b"" and r.drop_deadline() is None
    a = AsyncStreamResponse(200, Headers(), b"x", body=_AsyncReader())
    assert a.content == b"x" and a.http_version == "HTTP/1.1"


class _Reader:
    deadline_at: float | None = 1.0

    def next_chunk(self) -> bytes:
        return b""

    def close(self) -> None:
        pass


class _AsyncReader:
    deadline_at: float | None = 1.0

    async def next_chunk(self) -> bytes:
        return b""

    async def aclose(self) -> None:
        pass


def test_headers_get_answers_as_mapping_get() -> None:
    h = Headers([("Content-Type", "text/plain"), ("X-A", "1")])
    assert h.get("content-type") == "text/plain"
    assert h.get("missing") is None and h.get("missing", 0) == 0
    assert Headers(h).get("x-a") == "1"


def test_json_parses_the_body() -> None:
    assert Response(200, Headers(), b'{"a": [1, 2.5, null, true]}').json() == {"a": [1, 2.5, None, True]}
