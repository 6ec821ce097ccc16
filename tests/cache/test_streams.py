"""@cached on generator functions and methods (issue 14, item 4): recorded while consumed, replayed on a
hit; a stream that raises or that the consumer abandons early is never stored."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from infra.cache import Cache, cached

MakeCache = Callable[..., Cache]


def test_a_generator_is_recorded_then_replayed(make_cache: MakeCache) -> None:
    cache = make_cache()
    runs: list[int] = []

    @cached(namespace="streams", cache=cache)
    def tokens(n: int) -> Iterator[str]:
        runs.append(n)
        for i in range(n):
            yield f"t{i}"
        return "done"  # a generator's return value is replayed too

    assert inspect.isgeneratorfunction(tokens)
    assert list(tokens(3)) == ["t0", "t1", "t2"]
    gen = tokens(3)
    assert list(gen) == ["t0", "t1", "t2"]
    assert runs == [3]

    def drain(g: Iterator[str]) -> Any:
        try:
            while True:
                next(g)
        except StopIteration as stop:
            return stop.value

    assert drain(tokens(3)) == "done"
    # a fresh process-like reader (cold L1) replays from the store
    other = make_cache()

    @cached(namespace="streams", cache=other)
    def tokens2(n: int) -> Iterator[str]:
        raise AssertionError("not called")
        yield ""

    tokens2.__module__, tokens2.__qualname__ = tokens.__module__, tokens.__qualname__
    assert other.get("streams", tokens.cache_key(3)) == [["t0", "t1", "t2"], "done"]  # type: ignore[attr-defined]


def test_an_async_generator_is_recorded_then_replayed(cache: Cache) -> None:
    runs: list[int] = []

    @cached(namespace="streams", cache=cache)
    async def tokens(n: int) -> AsyncIterator[dict[str, Any]]:
        runs.append(n)
        for i in range(n):
            await asyncio.sleep(0)
            yield {"i": i, "text": f"t{i}"}

    assert inspect.isasyncgenfunction(tokens)

    async def main() -> None:
        first = [c async for c in tokens(2)]
        first[0]["text"] = "edited by the consumer"
        second = [c async for c in tokens(2)]
        assert second == [{"i": 0, "text": "t0"}, {"i": 1, "text": "t1"}]

    asyncio.run(main())
    assert runs == [2]


#: the runs of Chat's methods, counted outside the instance: its public attributes are configuration,
#: and methods key on them (issue 14 item 1)
CHAT_RUNS: list[str] = []


class Chat:
    @cached(namespace="streams_m")
    def stream(self, prompt: str) -> Iterator[str]:
        CHAT_RUNS.append(prompt)
        yield from prompt.split()

    @cached(namespace="streams_m")
    async def astream(self, prompt: str) -> AsyncIterator[str]:
        CHAT_RUNS.append(prompt)
        for w in prompt.split():
            yield w


def test_generator_methods_sync_and_async(cache: Cache) -> None:
    from infra.cache.process import set_cache

    prev = set_cache(cache)
    try:
        chat = Chat()
        CHAT_RUNS.clear()
        assert list(chat.stream("a b c")) == list(chat.stream("a b c")) == ["a", "b", "c"]

        async def collect() -> list[str]:
            return [w async for w in chat.astream("x y")]

        assert asyncio.run(collect()) == asyncio.run(collect()) == ["x", "y"]
        assert len(CHAT_RUNS) == 2
    finally:
        set_cache(prev)


def test_a_stream_that_raises_is_not_stored(cache: Cache) -> None:
    runs: list[int] = []

    @cached(namespace="streams", cache=cache)
    def flaky(n: int) -> Iterator[int]:
        runs.append(n)
        yield 1
        if len(runs) == 1:
            raise RuntimeError("boom")
        yield 2

    got: list[int] = []
    with pytest.raises(RuntimeError, match="boom"):
        got.extend(flaky(1))
    assert got == [] or got == [1]
    assert list(flaky(1)) == [1, 2]  # ran again: the failed run stored nothing
    assert list(flaky(1)) == [1, 2]
    assert runs == [1, 1]


def test_an_abandoned_stream_is_not_stored(cache: Cache) -> None:
    runs: list[int] = []
    closed: list[bool] = []

    @cached(namespace="streams", cache=cache)
    def words(n: int) -> Iterator[int]:
        runs.append(n)
        try:
            yield from range(n)
        finally:
            closed.append(True)

    for w in words(5):
        if w == 1:
            break  # the consumer leaves early
    assert closed == [True]  # the source was closed with the wrapper
    assert list(words(5)) == [0, 1, 2, 3, 4]  # and nothing partial was stored
    assert list(words(5)) == [0, 1, 2, 3, 4]
    assert runs == [5, 5]


def test_an_abandoned_or_failing_async_stream_is_not_stored(cache: Cache) -> None:
    runs: list[int] = []

    @cached(namespace="streams", cache=cache)
    async def words(n: int, fail: bool = False) -> AsyncIterator[int]:
        runs.append(n)
        for i in range(n):
            yield i
            if fail:
                raise ValueError("source failed")

    async def main() -> None:
        g = words(4)
        assert await g.__anext__() == 0
        await g.aclose()  # abandoned
        with pytest.raises(ValueError):
            _ = [i async for i in words(4, fail=True)]
        assert [i async for i in words(4)] == [0, 1, 2, 3]
        assert [i async for i in words(4)] == [0, 1, 2, 3]

    asyncio.run(main())
    assert runs == [4, 4, 4]


def test_model_chunks_replay_as_equal_models(make_cache: MakeCache) -> None:
    """LangChain's chat stream yields pydantic chunks; a cold reader replays equal ones from the store."""
    from langchain_core.messages import AIMessageChunk
    from langchain_core.outputs import ChatGenerationChunk

    def build(cache: Cache, runs: list[int]) -> Any:
        @cached(namespace="streams_lc", cache=cache)
        def chunks(prompt: str) -> Iterator[ChatGenerationChunk]:
            runs.append(1)
            for w in prompt.split():
                yield ChatGenerationChunk(message=AIMessageChunk(content=w, id="run-1"))

        return chunks

    runs: list[int] = []
    first = list(build(make_cache(), runs)("hello there"))
    again = list(build(make_cache(), runs)("hello there"))  # cold L1: read from the store
    assert runs == [1]
    assert again == first and [type(c) for c in again] == [type(c) for c in first]


def test_values_sent_or_thrown_in_reach_the_source_and_nothing_is_stored(cache: Cache) -> None:
    runs: list[int] = []

    @cached(namespace="streams", cache=cache)
    def echo(n: int) -> Any:
        runs.append(n)
        got = None
        for _ in range(n):
            try:
                got = yield got
            except KeyError:
                got = "handled"

    g = echo(3)
    assert next(g) is None
    assert g.send("a") == "a"
    assert g.throw(KeyError()) == "handled"
    g.close()

    @cached(namespace="streams", cache=cache)
    async def aecho(n: int) -> Any:
        runs.append(n)
        got = None
        for _ in range(n):
            try:
                got = yield got
            except KeyError:
                got = "handled"

    async def main() -> None:
        ag = aecho(3)
        assert await ag.__anext__() is None
        assert await ag.asend("b") == "b"
        assert await ag.athrow(KeyError()) == "handled"
        await ag.aclose()

    asyncio.run(main())
    assert list(echo(2)) == [None, None]  # ran again: nothing was stored for the interactive runs
    assert runs == [3, 3, 2]


def test_a_stream_run_to_its_end_after_a_send_or_a_throw_is_not_stored(cache: Cache) -> None:
    """The consumer's last request (a value sent, an exception thrown) reaches the source once; plain
    iteration after it sends None again; a run that took either is not stored even when it ends."""
    runs: list[int] = []
    seen: list[Any] = []

    @cached(namespace="streams", cache=cache)
    def echo(n: int) -> Any:
        runs.append(n)
        got = None
        for _ in range(n):
            try:
                got = yield got
            except KeyError:
                got = "handled"
            seen.append(got)
        return "end"

    g = echo(4)
    assert next(g) is None
    assert g.send("a") == "a"
    assert next(g) is None  # the sent value is not sent again
    assert g.throw(KeyError()) == "handled"
    with pytest.raises(StopIteration) as stop:
        next(g)
    assert stop.value.value == "end" and seen == ["a", None, "handled", None]

    @cached(namespace="streams", cache=cache)
    async def aecho(n: int) -> Any:
        runs.append(n)
        got = None
        for _ in range(n):
            try:
                got = yield got
            except KeyError:
                got = "handled"
            seen.append(got)

    async def main() -> list[Any]:
        ag = aecho(3)
        out = [await ag.__anext__(), await ag.athrow(KeyError()), await ag.asend("b")]
        with pytest.raises(StopAsyncIteration):
            await ag.__anext__()
        return out

    assert asyncio.run(main()) == [None, "handled", "b"]
    assert list(echo(4)) == [None] * 4 and runs == [4, 3, 4]  # ran again: neither run was stored
    assert asyncio.run(_collect(aecho(3))) == [None] * 3 and runs == [4, 3, 4, 3]


async def _collect(ag: Any) -> list[Any]:
    return [x async for x in ag]
