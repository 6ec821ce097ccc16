"""``AsyncOptimizedOllama``: the official ``ollama.AsyncClient`` itself, with tuning and a cache in front.

The async twin of :class:`~infra.ollama.client.OptimizedOllama`: the same plan from the shared core
(:meth:`~infra.ollama._core.ClientCore.plan`), the same cache values and decisions; only the awaiting differs
(``aget``/``aset`` on the cache, ``asyncio.sleep`` between retries, an ``asyncio.Semaphore``, single-flight on
futures of the running loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from ollama._client import AsyncClient as _Official

from ._core import (
    Flight,
    Handles,
    MemoEntry,
    Plan,
    Scope,
    is_embedding_model,
    official_signature,
)
from ._layer import LayerMixin
from ._values import (
    decode_full,
    decode_stream,
    embed_response,
    fill_vectors,
    full_value,
    split_found,
    storable,
    stream_value,
    tagged,
)
from .digests import BOOK
from .stream import StreamRecorder, areplay
from .warmup import AsyncKeepWarm

__all__ = ["AsyncOptimizedOllama"]

log = logging.getLogger("infra.ollama")


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

    # -- the layer's per-call keywords ----------------------------------------------------------------------

    @official_signature(_Official.generate, "profile", "cache")
    async def generate(
        self, *args: Any, profile: str | None = None, cache: bool | None = None, **kwargs: Any
    ) -> Any:
        """``ollama.AsyncClient.generate`` (``GenerateResponse``, or an async iterator when streaming)."""
        core = self._core
        mk = core.memo_key("generate", profile, args, kwargs) if cache is None else None
        entry = core.memo.get(mk) if mk is not None else None
        if entry is not None:  # the key is known: a hit needs no body built
            hit = await self._memo_hit(entry)
            if hit is not None:
                return hit
        with Scope(mk, entry is not None, profile, cache):  # (a memo entry that missed: looked up once)
            return await super().generate(*args, **kwargs)

    @official_signature(_Official.chat, "profile", "cache")
    async def chat(
        self, *args: Any, profile: str | None = None, cache: bool | None = None, **kwargs: Any
    ) -> Any:
        """``ollama.AsyncClient.chat`` (``ChatResponse``, or an async iterator when streaming)."""
        core = self._core
        mk = core.memo_key("chat", profile, args, kwargs) if cache is None else None
        entry = core.memo.get(mk) if mk is not None else None
        if entry is not None:  # the key is known: a hit needs no body built
            hit = await self._memo_hit(entry)
            if hit is not None:
                return hit
        with Scope(mk, entry is not None, profile, cache):  # (a memo entry that missed: looked up once)
            return await super().chat(*args, **kwargs)

    @official_signature(_Official.embed, "cache")
    async def embed(self, *args: Any, cache: bool | None = None, **kwargs: Any) -> Any:
        """``ollama.AsyncClient.embed``, cached per input: only inputs the cache lacks are sent, once."""
        with Scope(None, False, None, cache):
            return await super().embed(*args, **kwargs)

    @official_signature(_Official.embeddings, "cache")
    async def embeddings(self, *args: Any, cache: bool | None = None, **kwargs: Any) -> Any:
        """The deprecated single-prompt ``ollama.AsyncClient.embeddings``, cached whole."""
        with Scope(None, False, None, cache):
            return await super().embeddings(*args, **kwargs)

    # -- the one place the layer meets the official client --------------------------------------------------

    async def _request(self, cls: Any, *args: Any, stream: bool = False, **kwargs: Any) -> Any:
        plan = self._core.prepare(self._base_url, cls, args, kwargs, stream)
        if plan is None:
            return await _Official._request(self, cls, *args, stream=stream, **kwargs)

        def call(body: dict[str, Any]) -> Any:
            return _Official._request(self, cls, *args, stream=stream, **{**kwargs, "json": body})

        if plan.items is not None:
            return await self._embed(cls, call, plan)
        if stream:
            return self._stream(cls, call, plan)
        return await self._full(cls, call, plan)

    # -- warmup ---------------------------------------------------------------------------------------------

    async def warmup(self, models: Sequence[str], *, system_prompt: str | None = None) -> None:
        """Load ``models`` (see ``OptimizedOllama.warmup``); concurrently, failures logged, never raised."""

        async def one(m: str) -> None:
            try:
                await self._warm_one(m, system_prompt)
            except Exception as exc:
                self._core.failure(f"warmup:{m}", exc)

        await asyncio.gather(*(one(m) for m in models))

    async def _warm_one(self, model: str, system_prompt: str | None = None) -> None:
        from ollama import ResponseError

        if not is_embedding_model(model):
            msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
            msgs.append({"role": "user", "content": "ok"})
            try:
                await self.chat(model, msgs, options={"num_predict": 1}, cache=False)
                return
            except ResponseError as exc:
                if exc.status_code != 400:
                    raise
        await self.embed(model, "warmup", cache=False)

    def keep_warm(self, models: Sequence[str], *, interval: float | None = None) -> AsyncKeepWarm:
        """Start a task reloading ``models`` before their /api/ps ``expires_at``; ``await stop()`` it."""
        kw = AsyncKeepWarm(
            self.ps, self._warm_one, self._core.failure, list(models), interval=self._interval(interval)
        )
        kw.start()
        return kw

    # -- the I/O path ---------------------------------------------------------------------------------------

    async def _digest(self, model: str) -> str | None:
        """The model's current digest: /api/tags read once per host per process (see ``digests``)."""
        if not self.settings.resolve_digests:
            return None
        host = self._base_url
        if BOOK.needs_read(host):
            try:
                BOOK.apply(host, await _Official.list(self))
            except Exception as exc:  # the call itself reports a down server; entries just can't be tagged
                BOOK.failed(host)
                log.debug("infra.ollama: reading model digests from %s failed: %r", host, exc)
        return BOOK.digest(host, model)

    async def _memo_hit(self, e: MemoEntry) -> Any:
        t0 = time.perf_counter()
        value = await self._get(e.ns, e.key)
        if value is None or not await self._fresh(value, e.model):
            return None
        hit = self._core.rebuild(e.cls, e.key, value)
        if hit is not None:
            e.h.hit()
            e.h.duration_hit.observe(time.perf_counter() - t0)
        return hit

    async def _fresh(self, value: Any, model: str) -> bool:
        return tagged(value) and value["d"] == await self._digest(model)

    async def _get(self, ns: str, key: str) -> Any:
        core = self._core
        v = core.pending(ns, key)
        if v is not None:
            return v
        c = core.cache
        if c is None:
            return None
        try:
            return await c.aget(ns, key, default=None)
        except Exception as exc:
            core.failure("cache", exc)
            return None

    async def _set(self, ns: str, items: dict[str, Any], cost: float) -> None:
        core = self._core
        c = core.cache
        if c is None or not items:
            return
        if core.writer is not None:
            core.writer.put(c, ns, items, cost)
            return
        try:
            for k, v in items.items():
                await c.aset(ns, k, v, cost=cost)
        except Exception as exc:
            core.failure("cache", exc)

    async def _get_many(self, ns: str, keys: list[str]) -> dict[str, Any]:
        core = self._core
        out, rest = core.pending_many(ns, keys)
        c = core.cache
        if c is None or not rest:
            return out
        try:
            got = await c.aget_many(ns, rest)
        except Exception as exc:
            core.failure("cache", exc)
            return out
        out.update(got if isinstance(got, Mapping) else {})
        return out

    def _semaphore(self) -> asyncio.Semaphore:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.settings.max_concurrency)
        return self._sem

    async def _retrying(self, call: Callable[[], Awaitable[Any]], h: Handles) -> Any:
        core = self._core
        attempt = 0
        async with self._semaphore():
            while True:
                try:
                    return await call()
                except Exception as exc:
                    if attempt < self.settings.retries and core.retryable(exc):
                        h.retries.inc()
                        await asyncio.sleep(core.backoff(attempt))
                        attempt += 1
                        continue
                    h.errors.inc()
                    raise

    async def _full(
        self, cls: Any, call: Callable[[dict[str, Any]], Awaitable[Any]], plan: Plan, looked_up: bool = False
    ) -> Any:
        core, h, key = self._core, plan.h, plan.key
        t0 = time.perf_counter()
        if key is None:
            resp = await self._retrying(lambda: call(plan.body), h)
            h.duration_miss.observe(time.perf_counter() - t0)
            core.observe_final(h, plan.model, resp)
            return resp
        value = None if plan.looked_up else await self._get(plan.ns, key)
        if value is not None and await self._fresh(value, plan.model):
            hit = core.rebuild(cls, key, value)
            if hit is not None:
                h.hit()
                h.duration_hit.observe(time.perf_counter() - t0)
                return hit
        # single-flight: an identical call already in flight (on this loop) serves this one too
        loop = asyncio.get_running_loop()
        flight = self._flights.get(key)
        leader = flight is None or flight.done.get_loop() is not loop
        if leader:
            flight = self._flights[key] = Flight(loop.create_future())
        else:
            assert flight is not None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(flight.done), core.flight_wait())
            shared = decode_full(cls, flight.value) if flight.value is not None else None
            if shared is not None:
                h.coalesce()
                h.duration_hit.observe(time.perf_counter() - t0)
                return shared
        assert flight is not None
        h.miss()
        try:
            resp = await self._retrying(lambda: call(plan.body), h)
            spent = time.perf_counter() - t0
            h.duration_miss.observe(spent)
            core.observe_final(h, plan.model, resp)
            if plan.op == "embeddings" or storable(resp):
                value = full_value(resp, await self._digest(plan.model))
                flight.value = value
                await self._set(plan.ns, {key: value}, spent)
            return resp
        finally:
            if leader:
                if not flight.done.done():
                    flight.done.set_result(None)
                if self._flights.get(key) is flight:
                    del self._flights[key]

    async def _stream(
        self, cls: Any, call: Callable[[dict[str, Any]], Awaitable[Any]], plan: Plan
    ) -> AsyncIterator[Any]:
        core, h, key = self._core, plan.h, plan.key
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
        rec = StreamRecorder(t0, record=key is not None)
        async with self._semaphore():
            async for part in self._open(lambda: call(plan.body), h):
                if not rec.n:
                    h.ttft.observe(time.perf_counter() - t0)
                rec.add(part)
                yield part
        spent = time.perf_counter() - t0
        h.duration_miss.observe(spent)
        if rec.final is not None:
            core.observe_final(h, plan.model, rec.final)
            if key is not None and storable(rec.final):
                value = stream_value(rec.chunks, rec.offsets, await self._digest(plan.model))
                await self._set(plan.ns, {key: value}, spent)

    async def _open(self, call: Callable[[], Awaitable[Any]], h: Handles) -> AsyncIterator[Any]:
        """The official stream, retried only until its first chunk arrives."""
        core = self._core
        attempt = 0
        while True:
            it = (await call()).__aiter__()
            try:
                first = await it.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:
                if attempt < self.settings.retries and core.retryable(exc):
                    h.retries.inc()
                    await asyncio.sleep(core.backoff(attempt))
                    attempt += 1
                    continue
                h.errors.inc()
                raise
            break
        yield first
        try:
            async for part in it:
                yield part
        except Exception:
            h.errors.inc()
            raise

    async def _embed(self, cls: Any, call: Callable[[dict[str, Any]], Awaitable[Any]], plan: Plan) -> Any:
        core, h = self._core, plan.h
        assert plan.items is not None
        t0 = time.perf_counter()
        found = await self._get_many(plan.ns, [k for _, k in plan.items])
        digest = await self._digest(plan.model) if found else None
        vectors, missing = split_found(plan, found, digest)
        h.hit(len(plan.items) - len(missing))
        resp = None
        if missing:
            h.miss(len(missing))
            resp = await self._retrying(lambda: call(plan.embed_body([t for t, _ in missing])), h)
            spent = time.perf_counter() - t0
            if len(resp.embeddings) != len(missing):  # not what we asked for: hand it back, store nothing
                return resp
            digest = await self._digest(plan.model)
            await self._set(plan.ns, fill_vectors(vectors, missing, resp, digest, plan), spent / len(missing))
            h.duration_miss.observe(spent)
            core.observe_final(h, plan.model, resp)
        else:
            h.duration_hit.observe(time.perf_counter() - t0)
        return embed_response(cls, plan, vectors, resp)
