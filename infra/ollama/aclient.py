"""``AsyncOptimizedOllama``: the official ``ollama.AsyncClient`` itself, with tuning and a cache in front.

The async twin of :class:`~infra.ollama.client.OptimizedOllama`: the same plan from the shared core
(:meth:`~infra.ollama._core.ClientCore.plan`), the same cache values and decisions; only the awaiting differs
(``aget``/``aset`` on the cache, ``asyncio.sleep`` between retries, an ``asyncio.Semaphore``, single-flight on
futures of the running loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ollama import ResponseError
from ollama._client import AsyncClient as _Official

from ._core import Attempts, Flight, Handles, MemoEntry, Plan, Scope, official_signature
from ._flows import Digest, Effect, Flow, Get, GetMany, Land, Put, Run, Send, Share, embed, full, stream_end
from ._helpers import WARM_OPTIONS, warm_messages
from ._layer import LayerMixin
from ._values import decode_stream, tagged
from .digests import BOOK
from .stream import StreamRecorder, areplay
from .warmup import AsyncKeepWarm

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from ollama import ChatResponse, EmbeddingsResponse, EmbedResponse, GenerateResponse

    from ._verbs import Chat, Embed, Embeddings, Generate

__all__ = ["AsyncOptimizedOllama"]


class AsyncOptimizedOllama(LayerMixin, _Official):
    """``ollama.AsyncClient`` with perf_config's tuning and caching (see ``OptimizedOllama``)."""

    def _init_io(self) -> None:
        self._sem: asyncio.Semaphore | None = None  # made on first use, on the loop that uses it
        self._flights: dict[str, Flight] = {}

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until cache entries queued by write-behind are stored; False if ``timeout`` ran out."""
        w = self._core.writer
        return True if w is None else await asyncio.to_thread(w.flush, timeout)

    async def close(self) -> None:
        await self.flush()
        await super().close()  # type: ignore[no-untyped-call]

    # -- the layer's per-call keywords -----------------------------------------------------------------------

    if TYPE_CHECKING:  # the official signatures plus the layer's keywords, typed once in _verbs
        generate: Generate[
            Coroutine[Any, Any, GenerateResponse], Coroutine[Any, Any, AsyncIterator[GenerateResponse]]
        ]
        chat: Chat[Coroutine[Any, Any, ChatResponse], Coroutine[Any, Any, AsyncIterator[ChatResponse]]]
        embed: Embed[Coroutine[Any, Any, EmbedResponse]]
        embeddings: Embeddings[Coroutine[Any, Any, EmbeddingsResponse]]
    else:

        @official_signature(_Official.generate, "profile", "cache")
        async def generate(
            self, *args: object, profile: str | None = None, cache: bool | None = None, **kwargs: object
        ) -> GenerateResponse | AsyncIterator[GenerateResponse]:
            """``ollama.AsyncClient.generate`` (``GenerateResponse``, or an async iterator when streaming)."""
            return await self._layered("generate", _Official.generate, profile, cache, args, kwargs)

        @official_signature(_Official.chat, "profile", "cache")
        async def chat(
            self, *args: object, profile: str | None = None, cache: bool | None = None, **kwargs: object
        ) -> ChatResponse | AsyncIterator[ChatResponse]:
            """``ollama.AsyncClient.chat`` (``ChatResponse``, or an async iterator when streaming)."""
            return await self._layered("chat", _Official.chat, profile, cache, args, kwargs)

        @official_signature(_Official.embed, "cache")
        async def embed(self, *args: object, cache: bool | None = None, **kwargs: object) -> EmbedResponse:
            """``ollama.AsyncClient.embed``, cached per input: only inputs the cache lacks are sent, once."""
            with Scope(None, False, None, cache):
                return await super().embed(*args, **kwargs)

        @official_signature(_Official.embeddings, "cache")
        async def embeddings(
            self, *args: object, cache: bool | None = None, **kwargs: object
        ) -> EmbeddingsResponse:
            """The deprecated single-prompt ``ollama.AsyncClient.embeddings``, cached whole."""
            with Scope(None, False, None, cache):
                return await super().embeddings(*args, **kwargs)

    async def _layered(
        self,
        op: str,
        official: Callable[..., Awaitable[Any]],
        profile: str | None,
        cache: bool | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """generate/chat (see ``OptimizedOllama._layered``)."""
        core = self._core
        mk = core.memo_key(op, profile, args, kwargs) if cache is None else None
        entry = core.memo.get(mk) if mk is not None else None
        if entry is not None:  # the key is known: a hit needs no body built
            hit = await self._memo_hit(entry)
            if hit is not None:
                return hit
        with Scope(mk, entry is not None, profile, cache):  # (a memo entry that missed: looked up once)
            return await official(self, *args, **kwargs)

    # -- the one place the layer meets the official client ---------------------------------------------------

    async def _request(self, cls: Any, *args: Any, stream: bool = False, **kwargs: Any) -> Any:
        plan = self._core.prepare(self._base_url, cls, args, kwargs, stream)
        if plan is None:
            return await _Official._request(self, cls, *args, stream=stream, **kwargs)

        def call(body: dict[str, Any]) -> Awaitable[Any]:
            return _Official._request(self, cls, *args, stream=stream, **{**kwargs, "json": body})

        if stream and plan.items is None:
            return self._stream(cls, call, plan)
        return await self._drive((embed if plan.items is not None else full)(self._core, cls, plan), call)

    # -- warmup ----------------------------------------------------------------------------------------------

    async def warmup(self, models: Sequence[str], *, system_prompt: str | None = None) -> None:
        """Load ``models`` (see ``OptimizedOllama.warmup``); concurrently, failures logged, never raised."""

        async def one(m: str) -> None:
            try:
                await self._warm_one(m, system_prompt)
            except Exception as exc:
                self._core.failure(f"warmup:{m}", exc)

        await asyncio.gather(*(one(m) for m in models))

    async def _warm_one(self, model: str, system_prompt: str | None = None) -> None:
        msgs = warm_messages(model, system_prompt)
        if msgs is not None:
            try:
                await self.chat(model, msgs, options=WARM_OPTIONS, cache=False)
                return
            except ResponseError as exc:
                if exc.status_code != 400:  # 400: the model can't chat (an embedding model)
                    raise
        await self.embed(model, "warmup", cache=False)

    def keep_warm(self, models: Sequence[str], *, interval: float | None = None) -> AsyncKeepWarm:
        """Start a task reloading ``models`` before their /api/ps ``expires_at``; ``await stop()`` it."""
        kw = AsyncKeepWarm(
            self.ps, self._warm_one, self._core.failure, list(models), interval=self._interval(interval)
        )
        kw.start()
        return kw

    # -- the I/O path: each flow's effects, awaited ----------------------------------------------------------

    async def _drive(self, flow: Flow, call: Callable[[dict[str, Any]], Awaitable[Any]]) -> Any:
        """Run ``flow`` (see ``_flows``), awaiting each effect it yields; its return value is the call's."""
        run = Run(flow)
        while (effect := run.step()) is not None:
            try:
                run.answer = await self._perform(effect, call)
            except BaseException as exc:  # handed to the flow, whose finally blocks still run
                run.failed = exc
        return run.result

    async def _perform(self, effect: Effect, call: Callable[[dict[str, Any]], Awaitable[Any]]) -> Any:
        match effect:
            case Get(ns, key):
                return await self._get(ns, key)
            case Digest(model):
                return await self._digest(model)
            case Send(body, plan):
                return await self._retrying(lambda: call(body), plan.h)
            case Put(ns, items, cost):
                return await self._set(ns, items, cost)
            case GetMany(ns, keys):
                return await self._get_many(ns, keys)
            case Share(key):
                return await self._share(key)
            case Land(key, flight):
                return self._land(key, flight)
        raise AssertionError(f"unknown effect {effect!r}")

    async def _digest(self, model: str) -> str | None:
        """The model's current digest: /api/tags read once per host per process (see ``digests``)."""
        if not self.settings.resolve_digests:
            return None
        host = self._base_url
        if BOOK.needs_read(host):
            try:
                BOOK.apply(host, await _Official.list(self))
            except Exception as exc:  # the call itself reports a down server; entries just can't be tagged
                BOOK.failed(host, exc)
        return BOOK.digest(host, model)

    async def _memo_hit(self, e: MemoEntry) -> Any:
        t0 = time.perf_counter()
        value = await self._get(e.ns, e.key)
        if value is None or not await self._fresh(value, e.model):
            return None
        return self._core.served(e, value, t0)

    async def _fresh(self, value: Any, model: str) -> bool:
        return tagged(value) and value["d"] == await self._digest(model)

    async def _get(self, ns: str, key: str) -> Any:
        value, c = self._core.source(ns, key)
        if c is None:
            return value
        try:
            return await c.aget(ns, key, default=None)
        except Exception as exc:
            self._core.failure("cache", exc)
            return None

    async def _set(self, ns: str, items: dict[str, Any], cost: float) -> None:
        c = self._core.direct_store(ns, items, cost)
        if c is None:
            return
        try:
            for k, v in items.items():
                await c.aset(ns, k, v, cost=cost)
        except Exception as exc:
            self._core.failure("cache", exc)

    async def _get_many(self, ns: str, keys: list[str]) -> dict[str, Any]:
        out, rest, c = self._core.source_many(ns, keys)
        if c is None:
            return out
        try:
            got = await c.aget_many(ns, rest)
        except Exception as exc:
            self._core.failure("cache", exc)
            return out
        out.update(got if isinstance(got, Mapping) else {})
        return out

    async def _share(self, key: str) -> tuple[Flight, bool]:
        # single-flight: an identical call already in flight (on this loop) serves this one too
        loop = asyncio.get_running_loop()
        flight = self._flights.get(key)
        leader = flight is None or flight.done.get_loop() is not loop
        if leader:
            flight = self._flights[key] = Flight(loop.create_future())
        else:
            assert flight is not None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(flight.done), self._core.flight_wait())
        assert flight is not None
        return flight, leader

    def _land(self, key: str, flight: Flight) -> None:
        if not flight.done.done():
            flight.done.set_result(None)
        if self._flights.get(key) is flight:
            del self._flights[key]

    def _semaphore(self) -> asyncio.Semaphore:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.settings.max_concurrency)
        return self._sem

    async def _retrying(self, call: Callable[[], Awaitable[Any]], h: Handles) -> Any:
        attempts = Attempts(self._core, h)
        async with self._semaphore():
            while True:
                try:
                    return await call()
                except Exception as exc:
                    await asyncio.sleep(attempts.delay(exc))

    async def _stream(
        self, cls: Any, call: Callable[[dict[str, Any]], Awaitable[Any]], plan: Plan
    ) -> AsyncIterator[Any]:
        h, key = plan.h, plan.key
        t0 = time.perf_counter()
        if key is not None:
            value = await self._get(plan.ns, key)
            fresh = value is not None and await self._fresh(value, plan.model)
            decoded = decode_stream(value) if fresh else None
            if decoded is not None:
                h.hit()
                async for part in areplay(cls, decoded, self.settings.cache.replay == "paced"):
                    yield part
                h.duration_hit.observe(time.perf_counter() - t0)
                return
            h.miss()
        rec = StreamRecorder(t0, h.ttft, record=key is not None)
        async with self._semaphore():
            async for part in self._open(lambda: call(plan.body), h):
                rec.add(part)
                yield part
        await self._drive(stream_end(self._core, plan, rec), call)

    async def _open(self, call: Callable[[], Awaitable[Any]], h: Handles) -> AsyncIterator[Any]:
        """The official stream, retried only until its first chunk arrives."""
        attempts = Attempts(self._core, h)
        while True:
            it = (await call()).__aiter__()
            try:
                first = await it.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:
                await asyncio.sleep(attempts.delay(exc))
                continue
            break
        yield first
        try:
            async for part in it:
                yield part
        except Exception:
            h.errors.inc()
            raise
