"""Bodies, both ways.

The request body a call sends (``request_body``): encoded once per call, in one place, so every backend
(aiohttp, httpx async and sync, and any other) sends the same bytes under the same headers, and so a retry
resends exactly what the first try sent. A backend turns the prepared body into its own argument with
``chunks_for`` (an async backend) or ``sync_chunks_for`` (PerfClient): ``bytes`` pass as they are.

What the streamed-body readers share (``AiohttpBody``, ``HttpxBody``, ``SyncBody``): the response, the
connection slots it holds, the idle limit and the call's deadline, and how a read that failed is named.
Each reader only reads its backend's way and decides whether a timeout was the deadline's."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json as _json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import IO, Any, Protocol, TypeAlias

from infra.http._core import READ
from infra.http._errors import DeadlineExceeded, HTTPError, TransportError

__all__ = [
    "Body",
    "Content",
    "OneShot",
    "Releasable",
    "Rewindable",
    "Upload",
    "aiohttp_data",
    "chunks_for",
    "request_body",
    "sync_chunks_for",
]

#: What ``content=`` takes. ``bytes`` (or bytearray / memoryview), ``str`` (sent UTF-8, text/plain), a
#: text-mode file (its text read at the call, sent UTF-8, text/plain, as aiohttp sends one) and a list /
#: tuple of bytes (joined) are resent whole on a retry. A seekable binary file is rewound before each try
#: to where it stood when the call began, and sent with a Content-Length. A one-shot source (an iterator
#: or generator of bytes, an async iterator of bytes (AsyncPerfClient only), a file that can't seek) is
#: sent once, chunked: such a call retries nothing but a failed connect (nothing read from the source
#: yet), since a retry would send a different body. Multipart / form bodies aren't built: encode one
#: yourself and pass its bytes with its Content-Type.
Content: TypeAlias = bytes | bytearray | memoryview | str | IO[bytes] | Iterable[bytes] | AsyncIterable[bytes]

_CHUNK = 64 * 1024
# aiohttp's rules (ClientRequest), the default backend's, applied for every backend: a request without a
# body says Content-Length: 0 unless its method is one of these, and POST / PUT / PATCH say a Content-Type.
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_TYPED_METHODS = frozenset({"POST", "PUT", "PATCH"})
OCTET_STREAM = "application/octet-stream"
_NO_MULTIPART = (
    "multipart/form-data bodies (aiohttp's FormData) aren't built here: encode one yourself and pass its "
    "bytes with its Content-Type header"
)


class Rewindable:
    """A seekable file: each try sends its ``length`` bytes from ``start``, where it stood at the call."""

    __slots__ = ("file", "length", "start")

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.start = file.tell()
        self.length = file.seek(0, io.SEEK_END) - self.start
        file.seek(self.start)

    def sync_chunks(self) -> Iterator[bytes]:
        file, left = self.file, self.length
        file.seek(self.start)
        while left > 0:
            chunk = file.read(min(_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield bytes(chunk)

    def read_at(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes of the body from ``offset`` (0: its start)."""
        self.file.seek(self.start + offset)
        return bytes(self.file.read(min(n, self.length - offset)))

    async def async_chunks(self) -> AsyncIterator[bytes]:
        # A file in memory is read in place; a real one in a thread, as aiohttp reads files itself.
        file, left = self.file, self.length
        in_memory = isinstance(file, io.BytesIO)
        file.seek(self.start)
        while left > 0:
            n = min(_CHUNK, left)
            chunk = file.read(n) if in_memory else await asyncio.to_thread(file.read, n)
            if not chunk:
                return
            left -= len(chunk)
            yield bytes(chunk)


class OneShot:
    """A source that can be read once (iterator, generator, async iterator, unseekable file): ``started``
    once its first chunk was taken. A second try after that is refused (``spent``), never sent short."""

    __slots__ = ("source", "started")

    def __init__(self, source: object) -> None:
        self.source = source
        self.started = False

    def _check(self) -> None:
        if self.started:
            raise TransportError(
                "the request body is a one-shot stream (iterator, generator or unseekable file) already "
                "sent once; it is not sent again (pass bytes or a seekable file to allow retries)",
                kind="body_not_replayable",
            )

    def sync_chunks(self) -> Iterator[bytes]:
        self._check()
        source = self.source
        if isinstance(source, AsyncIterable):
            raise TypeError("PerfClient can't send an async iterable body; pass bytes, a file or an iterator")
        return self._sync_gen(_file_iter(source) if hasattr(source, "read") else source)  # type: ignore[arg-type]

    def _sync_gen(self, source: Iterable[bytes]) -> Iterator[bytes]:
        self.started = True
        for chunk in source:
            if chunk:
                yield _as_bytes(chunk)

    def async_chunks(self) -> AsyncIterator[bytes]:
        self._check()
        return self._async_gen()

    async def _async_gen(self) -> AsyncIterator[bytes]:
        self.started = True
        source = self.source
        if isinstance(source, AsyncIterable):
            async for chunk in source:
                if chunk:
                    yield _as_bytes(chunk)
            return
        for chunk in _file_iter(source) if hasattr(source, "read") else source:  # type: ignore[attr-defined]
            if chunk:
                yield _as_bytes(chunk)


#: A prepared body: bytes, or a file / stream read anew by each try.
Upload: TypeAlias = bytes | Rewindable | OneShot


def _file_iter(file: Any) -> Iterator[bytes]:
    return iter(lambda: file.read(_CHUNK), b"")


def _as_bytes(chunk: object) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode()
    return bytes(chunk)  # type: ignore[call-overload,no-any-return]


def chunks_for(body: Upload | None) -> bytes | AsyncIterator[bytes] | None:
    """What an async backend sends for a prepared body: the bytes, or this try's chunks."""
    if body is None or isinstance(body, bytes):
        return body
    return body.async_chunks()


def aiohttp_data(body: Upload | None) -> Any:
    """What the aiohttp backend sends for a prepared body: the bytes; a rewindable file as a payload that
    aiohttp can write again (``_rewind_payload``: it resends the request itself on a keep-alive connection
    the server closed, which an async generator can't replay); a one-shot source as this try's chunks."""
    if body is None or body.__class__ is bytes:
        return body
    if body.__class__ is Rewindable:
        return (_PAYLOAD[0] if _PAYLOAD else _rewind_payload())(body)
    return body.async_chunks()  # type: ignore[union-attr]


_PAYLOAD: list[Any] = []


def _rewind_payload() -> Any:
    """The aiohttp Payload class for a ``Rewindable`` body, made on first use (``import infra`` stays lazy
    about aiohttp). Each write sends the body's ``length`` bytes from its ``start``, so a resend (ours or
    aiohttp's own) sends it whole; it never closes the caller's file (aiohttp's file payloads do)."""
    from aiohttp import payload

    class RewindPayload(payload.Payload):
        _autoclose = True  # the file is the caller's: nothing of ours to close

        def __init__(self, body: Rewindable) -> None:
            super().__init__(body, content_type=OCTET_STREAM)
            self._size = body.length

        async def write(self, writer: Any) -> None:
            await self.write_with_length(writer, None)

        async def write_with_length(self, writer: Any, content_length: int | None) -> None:
            body: Rewindable = self._value
            total = body.length if content_length is None else min(body.length, content_length)
            in_memory = isinstance(body.file, io.BytesIO)
            sent = 0
            while sent < total:
                n = min(_CHUNK, total - sent)
                chunk = body.read_at(sent, n) if in_memory else await asyncio.to_thread(body.read_at, sent, n)
                if not chunk:
                    return
                await writer.write(chunk)
                sent += len(chunk)

        def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
            body: Rewindable = self._value
            return body.read_at(0, body.length).decode(encoding, errors)

    _PAYLOAD.append(RewindPayload)
    return RewindPayload


def sync_chunks_for(body: Upload | None) -> bytes | Iterator[bytes] | None:
    """What a sync backend sends for a prepared body: the bytes, or this try's chunks."""
    if body is None or isinstance(body, bytes):
        return body
    return body.sync_chunks()


def _has(headers: Mapping[str, str] | None, low: str) -> bool:
    return bool(headers) and any(k.lower() == low for k in headers)  # type: ignore[union-attr]


def request_body(
    method: str, content: object, json: object, headers: Mapping[str, str] | None
) -> tuple[Upload | None, Mapping[str, str] | None]:
    """The body a call sends and the headers that go with it, the same for every backend.

    ``json`` is encoded as aiohttp encodes it (``json.dumps`` defaults: ASCII with \\u escapes, ", "
    and ": " separators): aiohttp is the default backend, so its bytes are what servers have seen from this
    client all along, and pure ASCII survives any server's charset guess. Content-Type and Content-Length
    follow aiohttp's rules too (``_NO_BODY_METHODS``, ``_TYPED_METHODS``); the caller's headers win."""
    body: Upload | None
    kind: str | None
    if json is not None:
        if content is not None:
            raise TypeError("pass content= or json=, not both")
        body, kind = _json.dumps(json).encode(), "application/json"
    elif content is None:
        if method in _NO_BODY_METHODS:
            return None, headers
        body, kind = None, OCTET_STREAM if method in _TYPED_METHODS else None
    elif isinstance(content, bytes):  # a subclass as plain bytes: the backends test the exact class
        body, kind = content if content.__class__ is bytes else bytes(content), OCTET_STREAM
    elif isinstance(content, str):
        body, kind = content.encode(), "text/plain; charset=utf-8"
    elif isinstance(content, (bytearray, memoryview)):
        body, kind = bytes(content), OCTET_STREAM
    elif isinstance(content, io.TextIOBase) or _text_mode(content):  # its text, UTF-8, as aiohttp sends it
        body, kind = _read_text(content), "text/plain; charset=utf-8"  # type: ignore[arg-type]
    elif isinstance(content, (list, tuple)):  # re-iterable: joined once, so a retry resends it whole
        body, kind = b"".join(_as_bytes(chunk) for chunk in content), OCTET_STREAM
    elif isinstance(content, Mapping):
        raise TypeError(
            "content= takes bytes, str, a binary file or an iterable of bytes, not a mapping; for a form "
            "pass urllib.parse.urlencode(fields) with Content-Type: application/x-www-form-urlencoded "
            f"({_NO_MULTIPART})"
        )
    elif hasattr(content, "read") and _seekable(content):
        body, kind = Rewindable(content), OCTET_STREAM  # type: ignore[arg-type]
    elif hasattr(content, "read") or isinstance(content, (Iterable, AsyncIterable)):
        body, kind = OneShot(content), OCTET_STREAM
    else:
        raise TypeError(
            f"content= takes bytes, str, a binary file or an iterable of bytes, not {type(content).__name__}"
            f" ({_NO_MULTIPART})"
        )
    extra: dict[str, str] = {}
    if kind is not None and not _has(headers, "content-type"):
        extra["Content-Type"] = kind
    if (
        (body is None or isinstance(body, Rewindable))
        and not _has(headers, "content-length")
        and not _has(headers, "transfer-encoding")
    ):
        extra["Content-Length"] = "0" if body is None else str(body.length)
    if extra:
        headers = {**headers, **extra} if headers else extra
    return body, headers


def _text_mode(file: object) -> bool:
    """A text-mode file that isn't an io.TextIOBase (``tempfile.SpooledTemporaryFile(mode="w+")``)."""
    mode = getattr(file, "mode", None)
    return isinstance(mode, str) and "b" not in mode and hasattr(file, "read") and hasattr(file, "encoding")


def _read_text(file: io.TextIOBase) -> bytes:
    """A text file's text from where it stands, encoded UTF-8: read once, at the call (a retry resends
    the same bytes); aiohttp sends a text file's text UTF-8 encoded too."""
    text = file.read()
    if not isinstance(text, str):
        raise TypeError(f"content= text file {type(file).__name__}: read() gave {type(text).__name__}")
    return text.encode()


def _seekable(file: Any) -> bool:
    try:
        return bool(file.seekable())
    except Exception:
        return False


class Releasable(Protocol):
    """The slots a reader gives back exactly once (``AsyncLease``, or the sync client's ``Held``)."""

    @property
    def released(self) -> bool: ...

    def release(self) -> None: ...


@dataclasses.dataclass(slots=True, eq=False, repr=False)
class Body:
    """A streamed body's state: ``done`` once read to its end, ``deadline_at`` the call's deadline (None
    when only the idle timeout bounds the stream). Made as ``Body(resp, lease, idle, deadline_at, origin)``
    by each backend's subclass."""

    _resp: Any
    _lease: Releasable
    _idle: float | None
    deadline_at: float | None
    origin: str
    done: bool = dataclasses.field(default=False, init=False)

    def ran_out(self, deadline: bool) -> HTTPError:
        """The error of a read that waited too long: the call's deadline, or the idle timeout."""
        if deadline:
            return DeadlineExceeded("deadline exceeded while streaming the body", origin=self.origin)
        return TransportError(
            f"no body data for {self._idle}s (idle timeout)", kind="idle", origin=self.origin
        )

    def broke(self, exc: BaseException) -> TransportError:
        """The error of a read the backend failed."""
        return TransportError(f"stream broke: {type(exc).__name__}", kind=READ, origin=self.origin)
