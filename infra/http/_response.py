"""One small response type of our own, so callers never depend on which backend ran.

``Response`` is a fully read response (status, headers, bytes / text / json). ``AsyncStreamResponse`` and
``StreamResponse`` add iterators over body bytes and lines; they are only handed out by
``client.stream(...)`` context managers, which release the connection on exit whatever happened.
"""

from __future__ import annotations

import json as _json
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeAlias, TypedDict, TypeVar, overload

from infra.http._errors import Attempt, HTTPStatusError

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "AsyncBodyReader",
    "AsyncStreamResponse",
    "BodyReader",
    "Headers",
    "JSONValue",
    "LineDecoder",
    "Response",
    "ResponseKeywords",
    "StreamResponse",
    "backend_headers",
    "received",
]

#: What ``Response.json()`` returns: a JSON document as ``json.loads`` builds it. httpx, requests and
#: aiohttp return ``Any`` here, which under ``mypy --strict`` lets ``r.json()["choices"][0]["txt"]``
#: (a typo, a missing key, a list taken for a dict) through unchecked and spreads ``Any`` into the caller's
#: own types. This alias is the truth about the value instead: the caller narrows (``isinstance``), casts to
#: its own ``TypedDict``, or hands it to a validator (pydantic's ``model_validate`` takes it as is).
JSONValue: TypeAlias = dict[str, "JSONValue"] | list["JSONValue"] | str | int | float | bool | None

_T = TypeVar("_T")


class AsyncBodyReader(Protocol):
    """What ``AsyncStreamResponse`` reads its body from (the client's aiohttp / httpx body reader)."""

    deadline_at: float | None

    async def next_chunk(self) -> bytes:
        """The next chunk of the body; ``b""`` at its end."""
        ...

    async def aclose(self) -> None:
        """Release the connection (drops it when the body was not read to its end)."""
        ...


class BodyReader(Protocol):
    """What ``StreamResponse`` reads its body from (the sync client's httpx body reader)."""

    deadline_at: float | None

    def next_chunk(self) -> bytes:
        """The next chunk of the body; ``b""`` at its end."""
        ...

    def close(self) -> None:
        """Release the connection (drops it when the body was not read to its end)."""
        ...


_Body = TypeVar("_Body", AsyncBodyReader, BodyReader)


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only response headers. ``get_all`` returns every value of a repeated header.

    Wraps the backend's own case-insensitive mapping (aiohttp CIMultiDictProxy, httpx.Headers) without
    copying it: building our own dict per response costs more than the whole metrics path.
    """

    __slots__ = ("_src",)
    _src: Any

    def __init__(
        self, source: Mapping[str, str] | list[tuple[str, str]] | tuple[tuple[str, str], ...] | None = None
    ) -> None:
        # a dict / pairs are copied into our own mapping; a backend's mapping (aiohttp CIMultiDictProxy,
        # httpx.Headers) is wrapped as is
        if source is None or isinstance(source, (dict, list, tuple)):
            self._src = _CIDict(source or ())
        elif isinstance(source, Headers):
            self._src = source._src
        else:
            self._src = source

    @overload
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: str | _T) -> str | _T: ...
    def get(self, key: str, default: object = None) -> object:
        return self._src.get(key, default)

    def __getitem__(self, key: str) -> str:
        value = self._src.get(key)
        if value is None:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._src.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for k in self._src:
            low = k.lower()
            if low not in seen:
                seen.add(low)
                yield low

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def get_all(self, key: str) -> list[str]:
        src = self._src
        if hasattr(src, "getall"):  # aiohttp / multidict, and _CIDict
            return list(src.getall(key, ()))
        if hasattr(src, "get_list"):  # httpx
            return list(src.get_list(key))
        value = src.get(key)
        return [] if value is None else [value]

    def raw_items(self) -> list[tuple[str, str]]:
        """Every (name, value) pair, repeated headers included (for caching)."""
        src = self._src
        if hasattr(src, "multi_items"):  # httpx
            return list(src.multi_items())
        return [(str(k), str(v)) for k, v in src.items()]

    def __repr__(self) -> str:
        return f"Headers({self.raw_items()!r})"


_new = object.__new__


def backend_headers(source: Any) -> Headers:
    """``Headers(source)`` for a backend's own case-insensitive mapping (aiohttp CIMultiDictProxy,
    httpx.Headers), without the type checks of ``__init__``: the clients build one per response."""
    headers: Headers = _new(Headers)
    headers._src = source
    return headers


class _CIDict:
    """Minimal case-insensitive multi-mapping for responses built without a backend (cache hits)."""

    __slots__ = ("_items", "_map")

    def __init__(self, items: Iterable[tuple[str, str]] | Mapping[str, str]) -> None:
        pairs = list(items.items()) if isinstance(items, Mapping) else [(str(k), str(v)) for k, v in items]
        self._items = pairs
        self._map: dict[str, list[str]] = {}
        for k, v in pairs:
            self._map.setdefault(k.lower(), []).append(v)

    def get(self, key: str, default: Any = None) -> Any:
        values = self._map.get(key.lower())
        return values[0] if values else default

    def getall(self, key: str, default: Any = ()) -> list[str]:
        return self._map.get(key.lower(), list(default))

    def keys(self) -> list[str]:
        return [k for k, _ in self._items]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)


def _charset(content_type: str | None) -> str:
    if content_type:
        for part in content_type.split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                return value.strip('"')
    return "utf-8"


class Response:
    """A response whose body has been read in full."""

    __slots__ = (
        "_content",
        "from_cache",
        "headers",
        "history",
        "http_version",
        "method",
        "origin",
        "status",
        "url",
    )

    def __init__(
        self,
        status: int,
        headers: Headers,
        content: bytes | None = b"",
        *,
        url: str = "",
        method: str = "GET",
        origin: str = "",
        history: tuple[Attempt, ...] = (),
        http_version: str = "HTTP/1.1",
        from_cache: bool = False,
    ) -> None:
        self.status = status
        self.headers = headers
        self._content: bytes | None = content
        self.url = url
        self.method = method
        self.origin = origin
        self.history = history
        self.http_version = http_version
        self.from_cache = from_cache

    @property
    def status_code(self) -> int:
        """Alias of ``status`` (httpx / requests spelling)."""
        return self.status

    @property
    def content(self) -> bytes:
        return self._content or b""

    @property
    def text(self) -> str:
        return self.content.decode(_charset(self.headers.get("content-type")), errors="replace")

    def json(self) -> JSONValue:
        """The body parsed as JSON (see ``JSONValue`` for why not ``Any``)."""
        return _json.loads(self.content)  # type: ignore[no-any-return]

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def attempts(self) -> int:
        """How many tries this response took (1 when the first try answered)."""
        return len(self.history) or 1

    def raise_for_status(self) -> Response:
        """Raise HTTPStatusError for a 4xx / 5xx response; return ``self`` otherwise (for chaining)."""
        if self.status >= 400:
            raise HTTPStatusError(
                f"status {self.status}",
                origin=self.origin,
                method=self.method,
                history=self.history,
                response=self,
            )
        return self

    def __repr__(self) -> str:
        return f"<Response [{self.status}] {self.method} {self.origin}>"


def received(
    status: int, source: Any, content: bytes, url: str, method: str, origin: str, http_version: str
) -> Response:
    """``Response(status, backend_headers(source), content, url=url, method=method, origin=origin,
    http_version=http_version)`` in one call without keywords or frames of its own: the async client's
    hot path builds one per call (``source``: the backend's own case-insensitive headers)."""
    headers: Headers = _new(Headers)
    headers._src = source
    response: Response = _new(Response)
    response.status = status
    response.headers = headers
    response._content = content
    response.url = url
    response.method = method
    response.origin = origin
    response.history = ()
    response.http_version = http_version
    response.from_cache = False
    return response


class LineDecoder:
    """Split a byte stream into lines (``\\n`` or ``\\r\\n``), buffering a partial line across chunks."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._buffer + chunk if self._buffer else chunk
        lines = data.split(b"\n")
        self._buffer = lines.pop()
        return [line[:-1] if line.endswith(b"\r") else line for line in lines]

    def flush(self) -> list[bytes]:
        rest, self._buffer = self._buffer, b""
        return [rest[:-1] if rest.endswith(b"\r") else rest] if rest else []


class ResponseKeywords(TypedDict, total=False):
    """``Response``'s keyword-only arguments, which the stream responses pass on (a test keeps them equal)."""

    url: str
    method: str
    origin: str
    history: tuple[Attempt, ...]
    http_version: str
    from_cache: bool


class _Streamed(Response, Generic[_Body]):
    """What both stream responses share: ``Response``'s keywords plus the client's body reader."""

    __slots__ = ("_body",)
    _read_call: ClassVar[str]  # how the caller reads the rest, named when ``content`` is read too early

    def __init__(
        self,
        status: int,
        headers: Headers,
        content: bytes | None = b"",
        *,
        body: _Body,
        **response: Unpack[ResponseKeywords],
    ) -> None:
        super().__init__(status, headers, content, **response)
        self._body: _Body = body

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise RuntimeError(f"stream not read yet: call `{self._read_call}` first")
        return self._content

    def drop_deadline(self) -> None:
        """The configured total deadline bounded the wait for the headers; the body now runs on the idle
        timeout alone."""
        self._body.deadline_at = None


class AsyncStreamResponse(_Streamed[AsyncBodyReader]):
    """A response whose body is read as it arrives (``client.stream(...)``). Iterate once.

    ``aiter_bytes`` / ``aiter_lines`` yield body chunks / lines (bytes). ``aread()`` reads the rest.
    Once a byte has reached the caller the call is never retried.
    """

    __slots__ = ()
    _read_call = "await response.aread()"

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self._body.next_chunk()
            if not chunk:
                return
            yield chunk

    async def aiter_lines(self) -> AsyncIterator[bytes]:
        decoder = LineDecoder()
        async for chunk in self.aiter_bytes():
            for line in decoder.feed(chunk):
                yield line
        for line in decoder.flush():
            yield line

    async def aread(self) -> bytes:
        if self._content is None:
            self._content = b"".join([c async for c in self.aiter_bytes()])
        return self._content

    async def aclose(self) -> None:
        await self._body.aclose()


class StreamResponse(_Streamed[BodyReader]):
    """Sync twin of AsyncStreamResponse: ``iter_bytes``, ``iter_lines``, ``read``, ``close``."""

    __slots__ = ()
    _read_call = "response.read()"

    def iter_bytes(self) -> Iterator[bytes]:
        while True:
            chunk = self._body.next_chunk()
            if not chunk:
                return
            yield chunk

    def iter_lines(self) -> Iterator[bytes]:
        decoder = LineDecoder()
        for chunk in self.iter_bytes():
            yield from decoder.feed(chunk)
        yield from decoder.flush()

    def read(self) -> bytes:
        if self._content is None:
            self._content = b"".join(self.iter_bytes())
        return self._content

    def close(self) -> None:
        self._body.close()
