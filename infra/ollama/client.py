"""``OptimizedOllama``: the official ``ollama.Client``, tuned and cached, same methods and return types.

Thin by design: every request goes through the official client (no re-implementation of the API); this
class only decides the options sent (pinned runner options, profiles, keep_alive), a real timeout, retries
before the first token, a concurrency limit, and the cache in front (see :mod:`infra.ollama.keys` for what a
key covers). Anything not overridden (``list``, ``ps``, ``show``, ``pull``...) is the official client's own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from .stream import StreamRecorder, replay
from .warmup import KeepWarm

__all__ = ["OptimizedOllama"]


class OptimizedOllama:
    """Drop-in for ``ollama.Client``: ``generate``, ``chat``, ``embed``, ``embeddings`` (streaming too) plus
    ``warmup`` and ``keep_warm``. Extra keyword arguments on calls: ``profile`` (a named option set from
    settings) and ``cache`` (True/False to force or skip the cache for one call).

    ``settings.enabled = False`` makes it a pass-through to the official client with its own defaults.
    """

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
            client = ollama.Client(host=host or self._core.host, **client_kwargs)
        self._client = client
        self._enabled = self.settings.enabled
        self._sem = threading.BoundedSemaphore(self.settings.max_concurrency)
        self._flights: dict[str, Flight] = {}
        self._flight_lock = threading.Lock()
        self._digest_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Any = None, **kwargs: Any) -> OptimizedOllama:
        """Built from ``PerfConfig.ollama`` (``infra.config.get_config()`` when ``config`` is None)."""
        return cls(settings=settings_from(config), **kwargs)

    @property
    def client(self) -> Any:
        """The wrapped official ``ollama.Client``."""
        return self._client

    def cache_stats(self) -> dict[str, dict[str, int]]:
        """Cache hits and misses per operation (generate, chat, embed: per item, embeddings) so far."""
        return self._core.cache_stats()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._client, name)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until cache entries queued by write-behind are stored; False if ``timeout`` ran out."""
        w = self._core.writer
        return True if w is None else w.flush(timeout)

    def close(self) -> None:
        self.flush()
        self._client.close()

    def __enter__(self) -> OptimizedOllama:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- generate / chat ------------------------------------------------------------------------------------

    def generate(
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
        """``ollama.Client.generate``; returns ``GenerateResponse`` or an iterator of them when streaming."""
        from ollama import GenerateResponse

        core = self._core
        if not self._enabled:
            opts = options if profile is None else {**core.policy.profile(profile), **call_options(options)}
            return self._client.generate(
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

        def call() -> Any:
            return self._client.generate(
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
        # An empty prompt is Ollama's load/unload request: never cached.
        if (prompt or images) and (cache or (cache is None and core.enabled_for["generate"])):
            self._ensure_digests()
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
        return self._full(call, key, "generate", h, model, GenerateResponse)

    def chat(
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
        """``ollama.Client.chat``; returns ``ChatResponse`` or an iterator of them when streaming."""
        from ollama import ChatResponse

        core = self._core
        if not self._enabled:
            opts = options if profile is None else {**core.policy.profile(profile), **call_options(options)}
            return self._client.chat(
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

        def call() -> Any:
            return self._client.chat(
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
            self._ensure_digests()
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
        return self._full(call, key, "chat", h, model, ChatResponse)

    # -- embeddings -----------------------------------------------------------------------------------------

    def embed(
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
        """``ollama.Client.embed``, cached per input: only inputs not in the cache are sent, once each
        (repeats are deduplicated), in one request; vectors come back in input order."""
        from ollama import EmbedResponse

        core = self._core
        if not self._enabled:
            return self._client.embed(model, input, truncate, options, keep_alive, dimensions)
        opts = core.policy.merge(model, options, None)
        ka = core.keep_alive(keep_alive)
        h = core.handles(model, "embed")
        texts = [input] if isinstance(input, str) else list(input)
        caching = bool(texts) and (cache or (cache is None and core.enabled_for["embed"]))
        keys: list[str | None] = []
        if caching:
            self._ensure_digests()
            unique = list(dict.fromkeys(texts))
            keys = [
                core.key(
                    "embed", model, {"input": t, "truncate": truncate, "dimensions": dimensions}, opts, cache
                )
                for t in unique
            ]
        if not caching or any(k is None for k in keys):
            return self._retrying(lambda: self._client.embed(model, input, truncate, opts, ka, dimensions), h)
        t0 = time.perf_counter()
        ns = core.namespace("embed")
        found = self._get_many(ns, keys)  # type: ignore[arg-type]
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
            resp = self._retrying(
                lambda: self._client.embed(model, missing, truncate, opts, ka, dimensions), h
            )
            got = list(resp.embeddings)
            if len(got) != len(
                missing
            ):  # not what we asked for: hand the reply back untouched, store nothing
                return resp
            new = {k: list(v) for k, v in zip(missing_keys, got, strict=True)}
            self._set_many(ns, new)
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

    def embeddings(
        self,
        model: str = "",
        prompt: str | None = None,
        options: Any = None,
        keep_alive: float | str | None = None,
        *,
        cache: bool | None = None,
    ) -> Any:
        """The deprecated single-prompt ``ollama.Client.embeddings``, cached whole."""
        from ollama import EmbeddingsResponse

        core = self._core
        if not self._enabled:
            return self._client.embeddings(model, prompt, options, keep_alive)
        opts = core.policy.merge(model, options, None)
        ka = core.keep_alive(keep_alive)
        key = None
        if prompt and (cache or (cache is None and core.enabled_for["embeddings"])):
            self._ensure_digests()
            key = core.key("embeddings", model, {"prompt": prompt}, opts, cache)
        h = core.handles(model, "embeddings")
        return self._full(
            lambda: self._client.embeddings(model, prompt, opts, ka),
            key,
            "embeddings",
            h,
            model,
            EmbeddingsResponse,
            always_store=True,
        )

    # -- warmup ---------------------------------------------------------------------------------------------

    def warmup(
        self, models: Sequence[str], *, system_prompt: str | None = None, background: bool = True
    ) -> threading.Thread | None:
        """Load ``models`` with the pinned runner options through /api/chat with num_predict 1 (so the prompt
        path, and the system prompt's KV cache, are warm too); embedding models through /api/embed.

        In the background by default (returns the thread); failures are logged, never raised.
        """

        def run() -> None:
            for m in models:
                try:
                    self._warm_one(m, system_prompt)
                except Exception as exc:
                    self._core.failure(f"warmup:{m}", exc)

        if not background:
            run()
            return None
        t = threading.Thread(target=run, name="ollama-warmup", daemon=True)
        t.start()
        return t

    def _warm_one(self, model: str, system_prompt: str | None) -> None:
        from ollama import ResponseError

        opts = dict(self._core.policy.merge(model, None, None))
        ka = self._core.keep_alive(None)
        if not is_embedding_model(model):
            msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
            msgs.append({"role": "user", "content": "ok"})
            try:
                self._client.chat(model, msgs, options={**opts, "num_predict": 1}, keep_alive=ka)
                return
            except ResponseError as exc:
                if exc.status_code != 400:
                    raise
        self._client.embed(model, "warmup", None, opts, ka)

    def keep_warm(self, models: Sequence[str], *, interval: float | None = None) -> KeepWarm:
        """Start a daemon thread reloading ``models`` before their /api/ps ``expires_at``; ``stop()`` it."""
        kw = KeepWarm(self, list(models), interval=interval)
        kw.start()
        return kw

    # -- the I/O path ---------------------------------------------------------------------------------------

    def _ensure_digests(self) -> None:
        core = self._core
        if core.digests is not None:
            return
        with self._digest_lock:
            if core.digests is not None:
                return
            try:
                core.set_digests(self._client.list())
            except Exception as exc:
                core.digests = {}
                core.failure("digests", exc)

    def _get(self, ns: str, key: str) -> Any:
        c = self._core.cache
        if c is None:
            return None
        w = self._core.writer
        if w is not None and w.pending:
            v = w.get(ns, key)
            if v is not None:
                return v
        try:
            return c.get(ns, key, default=None)
        except Exception as exc:
            self._core.failure("cache", exc)
            return None

    def _set(self, ns: str, key: str, value: Any) -> None:
        c = self._core.cache
        if c is None:
            return
        if self._core.writer is not None:
            self._core.writer.put(c, ns, {key: value})
            return
        try:
            c.set(ns, key, value)
        except Exception as exc:
            self._core.failure("cache", exc)

    def _get_many(self, ns: str, keys: list[str]) -> Mapping[str, Any]:
        c = self._core.cache
        if c is None:
            return {}
        try:
            return with_pending(self._core, ns, keys, as_found(keys, c.get_many(ns, keys)))
        except Exception as exc:
            self._core.failure("cache", exc)
            return {}

    def _set_many(self, ns: str, items: Mapping[str, Any]) -> None:
        c = self._core.cache
        if c is None or not items:
            return
        if self._core.writer is not None:
            self._core.writer.put(c, ns, dict(items))
            return
        try:
            c.set_many(ns, dict(items))
        except Exception as exc:
            self._core.failure("cache", exc)

    def _retrying(self, call: Callable[[], Any], h: Handles) -> Any:
        core = self._core
        attempt = 0
        with self._sem:
            while True:
                try:
                    return call()
                except Exception as exc:
                    if attempt < self.settings.retries and core.retryable(exc):
                        h.retries.inc()
                        time.sleep(core.backoff(attempt))
                        attempt += 1
                        continue
                    h.errors.inc()
                    raise

    def _full(
        self,
        call: Callable[[], Any],
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
            value = self._get(ns, key)
            if value is not None:
                hit = core.decode_full(cls, value)
                if hit is not None:
                    h.hit()
                    h.duration_hit.observe(time.perf_counter() - t0)
                    return hit
            # single-flight: an identical call already in flight serves this one too
            with self._flight_lock:
                flight = self._flights.get(key)
                leader = flight is None
                if flight is None:
                    flight = self._flights[key] = Flight(threading.Event())
            if not leader:
                flight.done.wait(core.flight_wait())
                shared = core.decode_full(cls, flight.value) if flight.value is not None else None
                if shared is not None:
                    h.coalesce()
                    h.duration_hit.observe(time.perf_counter() - t0)
                    return shared
            h.miss()
            try:
                resp = self._retrying(call, h)
                h.duration_miss.observe(time.perf_counter() - t0)
                core.observe_final(h, model, resp)
                if always_store or core.storable(resp):
                    value = core.full_value(resp)
                    flight.value = value
                    self._set(ns, key, value)
                return resp
            finally:
                if leader:
                    flight.done.set()
                    with self._flight_lock:
                        self._flights.pop(key, None)
        resp = self._retrying(call, h)
        h.duration_miss.observe(time.perf_counter() - t0)
        core.observe_final(h, model, resp)
        return resp

    def _stream(
        self, call: Callable[[], Any], key: str | None, endpoint: str, h: Handles, model: str, cls: Any
    ) -> Iterator[Any]:
        core = self._core
        t0 = time.perf_counter()
        ns = core.namespace(endpoint)
        if key is not None:
            value = self._get(ns, key)
            decoded = core.decode_stream(value) if value is not None else None
            if decoded is not None:
                h.hit()
                yield from replay(cls, decoded, self.settings.cache.replay == "paced")
                h.duration_hit.observe(time.perf_counter() - t0)
                return
            h.miss()
        rec = StreamRecorder(t0, record=key is not None)
        self._sem.acquire()
        try:
            for part in self._open(call, h):
                if not rec.n:
                    h.ttft.observe(time.perf_counter() - t0)
                rec.add(part)
                yield part
        finally:
            self._sem.release()
        h.duration_miss.observe(time.perf_counter() - t0)
        if rec.final is not None:
            core.observe_final(h, model, rec.final)
            if key is not None and core.storable(rec.final):
                self._set(ns, key, rec.value())

    def _open(self, call: Callable[[], Any], h: Handles) -> Iterator[Any]:
        """The official stream, retried only until its first chunk arrives."""
        core = self._core
        attempt = 0
        while True:
            it = iter(call())
            try:
                first = next(it)
            except StopIteration:
                return
            except Exception as exc:
                if attempt < self.settings.retries and core.retryable(exc):
                    h.retries.inc()
                    time.sleep(core.backoff(attempt))
                    attempt += 1
                    continue
                h.errors.inc()
                raise
            break
        yield first
        try:
            yield from it
        except Exception:
            h.errors.inc()
            raise
