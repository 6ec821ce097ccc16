"""``@cached`` on generator functions and methods, sync and async (issue 14, item 4).

A stream is cached by recording its chunks while they pass to the consumer and replaying them on a hit,
at once (as ``OptimizedOllama`` replays a recorded chat stream with ``replay: "instant"``). What is stored
is ``[chunks, return_value]``: one value, so TTL, invalidation, codecs and independent hits (each replay
hands out chunks of its own) are the cache's as for any value.

A stream is stored only when it ran to its end: one that raises, or that the consumer abandons early
(``close()``, ``break``, garbage collection, cancellation), or into which the consumer ``send``\\s a value
(the chunks then depend on more than the arguments), stores nothing and changes nothing the consumer sees.
Each chunk is recorded as a copy taken before the consumer gets it, so a consumer that edits a chunk
doesn't edit the recording. Concurrent first calls of one key each run the stream (no single-flight: a
consumer can't be made to wait for another's pace).
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

from infra.cache._missing import MISSING
from infra.cache.values import freeze_plain

__all__ = ["async_stream_wrapper", "stream_wrapper"]

_perf = time.perf_counter
_IMMUTABLE_CHUNKS = (str, bytes)


class _Recorder:
    """The chunks of one run, each kept as a copy taken before the consumer sees it, and what the consumer
    asked of the source last (a value sent in, an exception thrown in): the decisions both wrappers share.
    ``throw`` / ``send`` / ``nxt`` are the source's methods (an async source's return awaitables)."""

    __slots__ = ("_next", "_send", "_throw", "frozen", "ok", "sent", "t0", "thrown")

    def __init__(
        self, throw: Callable[[BaseException], Any], send: Callable[[Any], Any], nxt: Callable[[], Any]
    ) -> None:
        self._throw, self._send, self._next = throw, send, nxt
        self.frozen: list[Any] = []
        self.ok = True  # False once a value is sent in: the run is not a function of its arguments alone
        self.t0 = _perf()
        self.sent: Any = None
        self.thrown: BaseException | None = None

    def add(self, chunk: Any) -> None:
        if type(chunk) in _IMMUTABLE_CHUNKS:  # the common LLM token: nothing to copy
            self.frozen.append((chunk, None))
        else:
            self.frozen.append(freeze_plain(chunk))

    def pull(self) -> Any:
        """Advance the source as the consumer asked: throw in what it threw, send what it sent, else take
        the next chunk. Returns what the source's method returns (a chunk, or an awaitable of one)."""
        exc, sent = self.thrown, self.sent
        if exc is None and sent is None:  # plain iteration: the common case
            return self._next()
        self.thrown = self.sent = None
        return self._throw(exc) if exc is not None else self._send(sent)

    def answered(self, sent: Any) -> None:
        """The consumer resumed the stream with ``sent`` (None: plain iteration)."""
        if sent is not None:
            self.ok = False  # the chunks now depend on more than the arguments: not stored
            self.sent = sent

    def threw(self, exc: BaseException) -> None:
        """The consumer threw ``exc`` in: the source decides what follows; nothing is stored."""
        self.ok = False
        self.thrown = exc

    def value(self, returned: Any) -> list[Any]:
        return [[s if how is None else how(s) for s, how in self.frozen], returned]


def _replayable(v: Any) -> bool:
    return type(v) is list and len(v) == 2 and type(v[0]) is list


def stream_wrapper(
    func: Callable[..., Generator[Any, Any, Any]],
    key: Callable[[Any, tuple[Any, ...], dict[str, Any]], str | None],
    current: Callable[[], Any],
    namespace: str,
    ttl: float | None,
) -> Callable[..., Generator[Any, Any, Any]]:
    """The caching twin of a generator function (itself a generator function)."""

    @functools.wraps(func)
    def gen_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        c = current()
        k = key(c, args, kwargs) if c.enabled else None
        if k is None:
            return (yield from func(*args, **kwargs))
        hit = c.get(namespace, k)
        if hit is not MISSING and _replayable(hit):
            chunks, returned = hit
            yield from chunks
            return returned
        gen = func(*args, **kwargs)
        rec = _Recorder(gen.throw, gen.send, gen.__next__)
        while True:
            try:
                chunk = rec.pull()
            except StopIteration as stop:
                if rec.ok:
                    c.set(namespace, k, rec.value(stop.value), ttl, cost=_perf() - rec.t0)
                return stop.value
            rec.add(chunk)
            try:
                rec.answered((yield chunk))
            except GeneratorExit:
                gen.close()  # abandoned: nothing stored
                raise
            except BaseException as exc:  # thrown in by the consumer
                rec.threw(exc)

    return gen_wrapper


def async_stream_wrapper(
    func: Callable[..., AsyncGenerator[Any, Any]],
    key: Callable[[Any, tuple[Any, ...], dict[str, Any]], str | None],
    current: Callable[[], Any],
    namespace: str,
    ttl: float | None,
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """The caching twin of an async generator function (itself an async generator function)."""

    @functools.wraps(func)
    async def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        c = current()
        k = key(c, args, kwargs) if c.enabled else None
        agen = None
        if k is not None:
            hit = await c.aget(namespace, k)
            if hit is not MISSING and _replayable(hit):
                chunks, _ = hit
                for chunk in chunks:
                    yield chunk
                return
        agen = func(*args, **kwargs)
        rec = _Recorder(agen.athrow, agen.asend, agen.__anext__)
        try:
            while True:
                try:
                    chunk = await rec.pull()
                except StopAsyncIteration:
                    break
                if k is not None:
                    rec.add(chunk)
                try:
                    rec.answered((yield chunk))
                except GeneratorExit:
                    raise
                except BaseException as exc:  # thrown in by the consumer
                    rec.threw(exc)
        except BaseException:  # the source raised, or the consumer closed or cancelled: nothing stored
            await agen.aclose()
            raise
        if k is not None and rec.ok:
            await c.aset(namespace, k, rec.value(None), ttl, cost=_perf() - rec.t0)

    return agen_wrapper
