"""``AsyncOptimizedOllama``: async twin of :class:`~infra.ollama.OptimizedOllama` over ``ollama.AsyncClient``.

Same decisions (they live in :mod:`infra.ollama._core`); only the I/O path differs: ``await`` on the official
async client and on the cache's ``aget``/``aset``, ``asyncio.Semaphore`` for the concurrency limit, async
generators for streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from ._core import (
    ClientCore,
    Flight,
    Handles,
    as_found,
    call_options,
    is_embedding_model,
    settings_from,
    with_pending,
)
from .keys import chat_fields, generate_fields
from .settings import OllamaSettings
from .stream import StreamRecorder, areplay
from .warmup import AsyncKeepWarm

__all__ = ["AsyncOptimizedOllama"]


class AsyncOptimizedOllama:
    """Drop-in for ``ollama.AsyncClient`` (see :class:`~infra.ollama.OptimizedOllama` for what it adds)."""

    def __init__(
        self,
        host: str | None = None,
        *,
        settings: OllamaSettings | None = None,
        cache: Any = None,
        client: Any = None,
        **client_kwargs: Any,
    ) -> None:
        self.settings = settings or OllamaSettings()
        self._core = ClientCore(self.settings, cache)
        if client is None:
            import ollama

            if self.settings.enabled:
                client_kwargs.setdefault("timeout", self._core.httpx_timeout())
            client = ollama.AsyncClient(host=host or self._core.host, **client_kwargs)
        self._client = client
        self._enabled = self.settings.enabled
        self._sem = asyncio.Semaphore(self.settings.max_concurrency)
        self._flights: dict[str, Flight] = {}
        self._digest_lock: asyncio.Lock | None = None

    @classmethod
    def from_config(cls, config: Any = None, **kwargs: Any) -> AsyncOptimizedOllama:
        return cls(settings=settings_from(config), **kwargs)

    @property
    def client(self) -> Any:
        """The wrapped official ``ollama.AsyncClient``."""
        return self._client

    def cache_stats(self) -> dict[str, dict[str, int]]:
        """Cache hits and misses per operation (generate, chat, embed: per item, embeddings) so far."""
        return self._core.cache_stats()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._client, name)

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until cache entries queued by write-behind are stored; False if ``timeout`` ran out."""
        w = self._core.writer
        return True if w is None else await asyncio.to_thread(w.flush, timeout)

    async def close(self) -> None:
        await self.flush()
        await self._client.close()

    async def __aenter__(self) -> AsyncOptimizedOllama:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- generate / chat ------------------------------------------------------------------------------------

    async def generate(
        self,
        model: str = "",
        prompt: str | None = None,
        suffix: str | None = None,
        *,
        system: str | None = None,
        template: str | None = None,
        context: Sequence[int] | None = None,
        stream: bool = False,
        think: bool | str | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        raw: bool | None = None,
        format: Any = None,
        images: Sequence[Any] | None = None,
        options: Any = None,
        keep_alive: float | str | None = None,
        width: int | None = None,
        height: int | None = None,
        steps: int | None = None,
        profile: str | None = None,
        cache: bool | None = None,
    ) -> Any:
        """``ollama.AsyncClient.generate``: a ``GenerateResponse``, or an async iterator when streaming."""
        from ollama import GenerateResponse

        core = self._core
        if not self._enabled:
            opts = options if profile is None else {**core.policy.profile(profile), **call_options(options)}
            return await self._client.generate(
                model,
                prompt,
                suffix,
                system=system,
                template=template,
                context=context,
                stream=stream,
                think=think,
                logprobs=logprobs,
                top_logprobs=top_logprobs,
                raw=raw,
                format=format,
                images=images,
                options=opts,
                keep_alive=keep_alive,
                width=width,
                height=height,
                steps=steps,
            )
        opts = core.policy.merge(model, options, profile)
        ka = core.keep_alive(keep_alive)

        def call() -> Awaitable[Any]:
            return self._client.generate(  # type: ignore[no-any-return]
                model,
                prompt,
                suffix,
                system=system,
                template=template,
                context=context,
                stream=stream,
                think=think,
                logprobs=logprobs,
                top_logprobs=top_logprobs,
                raw=raw,
                format=format,
                images=images,
                options=opts,
                keep_alive=ka,
                width=width,
                height=height,
                steps=steps,
            )

        key = None
        if (prompt or images) and (cache or (cache is None and core.enabled_for["generate"])):
            await self._ensure_digests()
            extra = {"width": width, "height": height, "steps": steps} if (width or height or steps) else None
            fields = generate_fields(
                prompt=prompt,
                suffix=suffix,
                system=system,
                template=template,
                context=context,
                raw=raw,
                fmt=format,
                images=images,
                think=think,
                logprobs=logprobs,
                top_logprobs=top_logprobs,
                stream=stream,
                extra=extra,
            )
            key = core.key("generate", model, fields, opts, cache)
        h = core.handles(model, "generate")
        if stream:
            return self._stream(call, key, "generate", h, model, GenerateResponse)
        return await self._full(call, key, "generate", h, model, GenerateResponse)

    async def chat(
        self,
        model: str = "",
        messages: Sequence[Any] | None = None,
        *,
        tools: Sequence[Any] | None = None,
        stream: bool = False,
        think: bool | str | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        format: Any = None,
        options: Any = None,
        keep_alive: float | str | None = None,
        profile: str | None = None,
        cache: bool | None = None,
    ) -> Any:
        """``ollama.AsyncClient.chat``: a ``ChatResponse``, or an async iterator when streaming."""
        from ollama import ChatResponse

        core = self._core
        if not self._enabled:
            opts = options if profile is None else {**core.policy.profile(profile), **call_options(options)}
            return await self._client.chat(
                model,
                messages,
                tools=tools,
                stream=stream,
                think=think,
                logprobs=logprobs,
                top_logprobs=top_logprobs,
                format=format,
                options=opts,
                keep_alive=keep_alive,
            )
        opts = core.policy.merge(model, options, profile)
        ka = core.keep_alive(keep_alive)

        def call() -> Awaitable[Any]:
            return self._client.chat(  # type: ignore[no-any-return]
                model,
                messages,
                tools=tools,
                stream=stream,
                think=think,
                logprobs=logprobs,
                top_logprobs=top_logprobs,
                format=format,
                options=opts,
                keep_alive=ka,
            )

        key = None
        if messages and (cache or (cache is None and core.enabled_for["chat"])):
            await self._ensure_digests()
            fields = chat_fields(
                messages=messages,
                tools=tools,
                fmt=format,
                think=think,
                logprobs=logprobs,
                top_logprobs=top_logprobs,
                stream=stream,
            )
            key = core.key("chat", model, fields, opts, cache)
        h = core.handles(model, "chat")
        if stream:
            return self._stream(call, key, "chat", h, model, ChatResponse)
        return await self._full(call, key, "chat", h, model, ChatResponse)

    # -- embeddings -----------------------------------------------------------------------------------------

    async def embed(
        self,
        model: str = "",
        input: str | Sequence[str] = "",
        truncate: bool | None = None,
        options: Any = None,
        keep_alive: float | str | None = None,
        dimensions: int | None = None,
        *,
        cache: bool | None = None,
    ) -> Any:
        """``ollama.AsyncClient.embed``, cached per input (see ``OptimizedOllama.embed``)."""
        from ollama import EmbedResponse

        core = self._core
        if not self._enabled:
            return await self._client.embed(model, input, truncate, options, keep_alive, dimensions)
        opts = core.policy.merge(model, options, None)
        ka = core.keep_alive(keep_alive)
        h = core.handles(model, "embed")
        texts = [input] if isinstance(input, str) else list(input)
        caching = bool(texts) and (cache or (cache is None and core.enabled_for["embed"]))
        keys: list[str | None] = []
        if caching:
            await self._ensure_digests()
            unique = list(dict.fromkeys(texts))
            keys = [
                core.key(
                    "embed", model, {"input": t, "truncate": truncate, "dimensions": dimensions}, opts, cache
                )
                for t in unique
            ]
        if not caching or any(k is None for k in keys):
            return await self._retrying(
                lambda: self._client.embed(model, input, truncate, opts, ka, dimensions), h
            )
        t0 = time.perf_counter()
        ns = core.namespace("embed")
        found = await self._get_many(ns, keys)  # type: ignore[arg-type]
        vectors: dict[str, Any] = {}
        missing: list[str] = []
        missing_keys: list[str] = []
        for text, k in zip(unique, keys, strict=True):
            v = found.get(k)  # type: ignore[arg-type]
            if isinstance(v, list):
                vectors[text] = list(v)  # a copy: the caller may mutate it, the L1 entry must not change
            else:
                missing.append(text)
                missing_keys.append(k)  # type: ignore[arg-type]
        h.hit(len(unique) - len(missing))
        resp = None
        if missing:
            h.miss(len(missing))
            resp = await self._retrying(
                lambda: self._client.embed(model, missing, truncate, opts, ka, dimensions), h
            )
            got = list(resp.embeddings)
            if len(got) != len(missing):
                return resp
            await self._set_many(ns, {k: list(v) for k, v in zip(missing_keys, got, strict=True)})
            for text, v in zip(missing, got, strict=True):
                vectors[text] = v
            h.duration_miss.observe(time.perf_counter() - t0)
            core.observe_final(h, model, resp)
        else:
            h.duration_hit.observe(time.perf_counter() - t0)
        fields: dict[str, Any] = {
            "model": resp.model if resp is not None else model,
            "embeddings": [vectors[t] for t in texts],
        }
        if resp is not None:
            for name in ("total_duration", "load_duration", "prompt_eval_count"):
                if getattr(resp, name, None) is not None:
                    fields[name] = getattr(resp, name)
        return EmbedResponse.model_construct(**fields)

    async def embeddings(
        self,
        model: str = "",
        prompt: str | None = None,
        options: Any = None,
        keep_alive: float | str | None = None,
        *,
        cache: bool | None = None,
    ) -> Any:
        """The deprecated single-prompt ``embeddings``, cached whole."""
        from ollama import EmbeddingsResponse

        core = self._core
        if not self._enabled:
            return await self._client.embeddings(model, prompt, options, keep_alive)
        opts = core.policy.merge(model, options, None)
        ka = core.keep_alive(keep_alive)
        key = None
        if prompt and (cache or (cache is None and core.enabled_for["embeddings"])):
            await self._ensure_digests()
            key = core.key("embeddings", model, {"prompt": prompt}, opts, cache)
        h = core.handles(model, "embeddings")
        return await self._full(
            lambda: self._client.embeddings(model, prompt, opts, ka),
            key,
            "embeddings",
            h,
            model,
            EmbeddingsResponse,
            always_store=True,
        )

    # -- warmup ---------------------------------------------------------------------------------------------

    def warmup(self, models: Sequence[str], *, system_prompt: str | None = None) -> asyncio.Task[None]:
        """Start loading ``models`` in the background (a task; see ``OptimizedOllama.warmup``)."""

        async def run() -> None:
            for m in models:
                try:
                    await self._warm_one(m, system_prompt)
                except Exception as exc:
                    self._core.failure(f"warmup:{m}", exc)

        return asyncio.ensure_future(run())

    async def _warm_one(self, model: str, system_prompt: str | None) -> None:
        from ollama import ResponseError

        opts = dict(self._core.policy.merge(model, None, None))
        ka = self._core.keep_alive(None)
        if not is_embedding_model(model):
            msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
            msgs.append({"role": "user", "content": "ok"})
            try:
                await self._client.chat(model, msgs, options={**opts, "num_predict": 1}, keep_alive=ka)
                return
            except ResponseError as exc:
                if exc.status_code != 400:
                    raise
        await self._client.embed(model, "warmup", None, opts, ka)

    def keep_warm(self, models: Sequence[str], *, interval: float | None = None) -> AsyncKeepWarm:
        """Start a task that reloads ``models`` before their /api/ps ``expires_at``; ``await kw.stop()``."""
        kw = AsyncKeepWarm(self, list(models), interval=interval)
        kw.start()
        return kw

    # -- the I/O path ---------------------------------------------------------------------------------------

    async def _ensure_digests(self) -> None:
        core = self._core
        if core.digests is not None:
            return
        if self._digest_lock is None:
            self._digest_lock = asyncio.Lock()
        async with self._digest_lock:
            if core.digests is not None:
                return
            try:
                core.set_digests(await self._client.list())
            except Exception as exc:
                core.digests = {}
                core.failure("digests", exc)

    async def _get(self, ns: str, key: str) -> Any:
        c = self._core.cache
        if c is None:
            return None
        w = self._core.writer
        if w is not None and w.pending:
            v = w.get(ns, key)
            if v is not None:
                return v
        try:
            return await c.aget(ns, key, default=None)
        except Exception as exc:
            self._core.failure("cache", exc)
            return None

    async def _set(self, ns: str, key: str, value: Any) -> None:
        c = self._core.cache
        if c is None:
            return
        if self._core.writer is not None:
            self._core.writer.put(c, ns, {key: value})
            return
        try:
            await c.aset(ns, key, value)
        except Exception as exc:
            self._core.failure("cache", exc)

    async def _get_many(self, ns: str, keys: list[str]) -> Mapping[str, Any]:
        c = self._core.cache
        if c is None:
            return {}
        try:
            return with_pending(self._core, ns, keys, as_found(keys, await c.aget_many(ns, keys)))
        except Exception as exc:
            self._core.failure("cache", exc)
            return {}

    async def _set_many(self, ns: str, items: Mapping[str, Any]) -> None:
        c = self._core.cache
        if c is None or not items:
            return
        if self._core.writer is not None:
            self._core.writer.put(c, ns, dict(items))
            return
        try:
            await c.aset_many(ns, dict(items))
        except Exception as exc:
            self._core.failure("cache", exc)

    async def _retrying(self, call: Callable[[], Awaitable[Any]], h: Handles) -> Any:
        core = self._core
        attempt = 0
        async with self._sem:
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
        self,
        call: Callable[[], Awaitable[Any]],
        key: str | None,
        endpoint: str,
        h: Handles,
        model: str,
        cls: Any,
        always_store: bool = False,
    ) -> Any:
        core = self._core
        t0 = time.perf_counter()
        ns = core.namespace(endpoint)
        if key is not None:
            value = await self._get(ns, key)
            if value is not None:
                hit = core.decode_full(cls, value)
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
                shared = core.decode_full(cls, flight.value) if flight.value is not None else None
                if shared is not None:
                    h.coalesce()
                    h.duration_hit.observe(time.perf_counter() - t0)
                    return shared
            assert flight is not None
            h.miss()
            try:
                resp = await self._retrying(call, h)
                h.duration_miss.observe(time.perf_counter() - t0)
                core.observe_final(h, model, resp)
                if always_store or core.storable(resp):
                    value = core.full_value(resp)
                    flight.value = value
                    await self._set(ns, key, value)
                return resp
            finally:
                if leader:
                    if not flight.done.done():
                        flight.done.set_result(None)
                    if self._flights.get(key) is flight:
                        del self._flights[key]
        resp = await self._retrying(call, h)
        h.duration_miss.observe(time.perf_counter() - t0)
        core.observe_final(h, model, resp)
        return resp

    async def _stream(
        self,
        call: Callable[[], Awaitable[Any]],
        key: str | None,
        endpoint: str,
        h: Handles,
        model: str,
        cls: Any,
    ) -> AsyncIterator[Any]:
        core = self._core
        t0 = time.perf_counter()
        ns = core.namespace(endpoint)
        if key is not None:
            value = await self._get(ns, key)
            decoded = core.decode_stream(value) if value is not None else None
            if decoded is not None:
                h.hit()
                async for part in areplay(cls, decoded, self.settings.cache.replay == "paced"):
                    yield part
                h.duration_hit.observe(time.perf_counter() - t0)
                return
            h.miss()
        rec = StreamRecorder(t0, record=key is not None)
        async with self._sem:
            async for part in self._open(call, h):
                if not rec.n:
                    h.ttft.observe(time.perf_counter() - t0)
                rec.add(part)
                yield part
        h.duration_miss.observe(time.perf_counter() - t0)
        if rec.final is not None:
            core.observe_final(h, model, rec.final)
            if key is not None and core.storable(rec.final):
                await self._set(ns, key, rec.value())

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
