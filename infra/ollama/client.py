"""``OptimizedOllama``: the official ``ollama.Client`` itself, with tuning and a cache in front of it.

A subclass: every public method is the official one (same signatures, same request bodies, same errors); the
layer sits in ``_request``, where the body the official client serialized is planned by the shared I/O-free
core (:meth:`~infra.ollama._core.ClientCore.plan`): runner options and keep_alive filled in only where the
call left them out, the cache key, a real timeout, retries before the first token, a concurrency limit and
single-flight. With the layer off (``PERF_ENABLED=0``, ``ollama.enabled: false`` or
``OllamaConfig(enabled=False)``) ``_request`` is the official one and requests are byte-identical.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ollama._client import Client as _Official

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
from .stream import StreamRecorder, replay
from .warmup import KeepWarm

__all__ = ["OptimizedOllama"]

log = logging.getLogger("infra.ollama")


class OptimizedOllama(LayerMixin, _Official):
    """``ollama.Client`` with perf_config's tuning and caching (``isinstance(x, ollama.Client)`` holds).

    Takes what ``ollama.Client`` takes (``host``, ``headers``, ``timeout``, httpx keywords) plus ``settings``
    (default: perf_config's ``ollama`` section, read now) and ``cache`` (default: ``get_cache()``).
    Calls accept two more keywords: ``profile`` (a named option set from settings) and ``cache`` (True/False
    to force or skip the cache for one call). ``warmup`` and ``keep_warm`` load models ahead of use.
    """

    def _init_io(self) -> None:
        self._sem = threading.BoundedSemaphore(self.settings.max_concurrency)
        self._flights: dict[str, Flight] = {}
        self._flight_lock = threading.Lock()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until cache entries queued by write-behind are stored; False if ``timeout`` ran out."""
        w = self._core.writer
        return True if w is None else w.flush(timeout)

    def close(self) -> None:
        self.flush()
        super().close()  # type: ignore[no-untyped-call]

    # -- the layer's per-call keywords ----------------------------------------------------------------------

    @official_signature(_Official.generate, "profile", "cache")
    def generate(
        self, *args: Any, profile: str | None = None, cache: bool | None = None, **kwargs: Any
    ) -> Any:
        """``ollama.Client.generate`` (``GenerateResponse``, or an iterator of them when streaming)."""
        core = self._core
        mk = core.memo_key("generate", profile, args, kwargs) if cache is None else None
        entry = core.memo.get(mk) if mk is not None else None
        if entry is not None:  # the key is known: a hit needs no body built
            hit = self._memo_hit(entry)
            if hit is not None:
                return hit
        with Scope(mk, entry is not None, profile, cache):  # (a memo entry that missed: looked up once)
            return super().generate(*args, **kwargs)

    @official_signature(_Official.chat, "profile", "cache")
    def chat(self, *args: Any, profile: str | None = None, cache: bool | None = None, **kwargs: Any) -> Any:
        """``ollama.Client.chat`` (``ChatResponse``, or an iterator of them when streaming)."""
        core = self._core
        mk = core.memo_key("chat", profile, args, kwargs) if cache is None else None
        entry = core.memo.get(mk) if mk is not None else None
        if entry is not None:  # the key is known: a hit needs no body built
            hit = self._memo_hit(entry)
            if hit is not None:
                return hit
        with Scope(mk, entry is not None, profile, cache):  # (a memo entry that missed: looked up once)
            return super().chat(*args, **kwargs)

    @official_signature(_Official.embed, "cache")
    def embed(self, *args: Any, cache: bool | None = None, **kwargs: Any) -> Any:
        """``ollama.Client.embed``, cached per input: only inputs not in the cache are sent, once each."""
        with Scope(None, False, None, cache):
            return super().embed(*args, **kwargs)

    @official_signature(_Official.embeddings, "cache")
    def embeddings(self, *args: Any, cache: bool | None = None, **kwargs: Any) -> Any:
        """The deprecated single-prompt ``ollama.Client.embeddings``, cached whole."""
        with Scope(None, False, None, cache):
            return super().embeddings(*args, **kwargs)

    # -- the one place the layer meets the official client --------------------------------------------------

    def _request(self, cls: Any, *args: Any, stream: bool = False, **kwargs: Any) -> Any:
        plan = self._core.prepare(self._base_url, cls, args, kwargs, stream)
        if plan is None:
            return _Official._request(self, cls, *args, stream=stream, **kwargs)

        def call(body: dict[str, Any]) -> Any:
            return _Official._request(self, cls, *args, stream=stream, **{**kwargs, "json": body})

        if plan.items is not None:
            return self._embed(cls, call, plan)
        if stream:
            return self._stream(cls, call, plan)
        return self._full(cls, call, plan)

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

    def _warm_one(self, model: str, system_prompt: str | None = None) -> None:
        from ollama import ResponseError

        if not is_embedding_model(model):
            msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
            msgs.append({"role": "user", "content": "ok"})
            try:
                self.chat(model, msgs, options={"num_predict": 1}, cache=False)
                return
            except ResponseError as exc:
                if exc.status_code != 400:
                    raise
        self.embed(model, "warmup", cache=False)

    def keep_warm(self, models: Sequence[str], *, interval: float | None = None) -> KeepWarm:
        """Start a daemon thread reloading ``models`` before their /api/ps ``expires_at``; ``stop()`` it."""
        kw = KeepWarm(
            self.ps, self._warm_one, self._core.failure, list(models), interval=self._interval(interval)
        )
        kw.start()
        return kw

    # -- the I/O path ---------------------------------------------------------------------------------------

    def _digest(self, model: str) -> str | None:
        """The model's current digest: /api/tags read once per host per process (see ``digests``)."""
        if not self.settings.resolve_digests:
            return None
        host = self._base_url
        if BOOK.needs_read(host):
            try:
                BOOK.apply(host, _Official.list(self))
            except Exception as exc:  # the call itself reports a down server; entries just can't be tagged
                BOOK.failed(host)
                log.debug("infra.ollama: reading model digests from %s failed: %r", host, exc)
        return BOOK.digest(host, model)

    def _memo_hit(self, e: MemoEntry) -> Any:
        t0 = time.perf_counter()
        value = self._get(e.ns, e.key)
        if value is None or not self._fresh(value, e.model):
            return None
        hit = self._core.rebuild(e.cls, e.key, value)
        if hit is not None:
            e.h.hit()
            e.h.duration_hit.observe(time.perf_counter() - t0)
        return hit

    def _fresh(self, value: Any, model: str) -> bool:
        return tagged(value) and value["d"] == self._digest(model)

    def _get(self, ns: str, key: str) -> Any:
        core = self._core
        v = core.pending(ns, key)
        if v is not None:
            return v
        c = core.cache
        if c is None:
            return None
        try:
            return c.get(ns, key, default=None)
        except Exception as exc:
            core.failure("cache", exc)
            return None

    def _set(self, ns: str, items: dict[str, Any], cost: float) -> None:
        core = self._core
        c = core.cache
        if c is None or not items:
            return
        if core.writer is not None:
            core.writer.put(c, ns, items, cost)
            return
        try:
            for k, v in items.items():
                c.set(ns, k, v, cost=cost)
        except Exception as exc:
            core.failure("cache", exc)

    def _get_many(self, ns: str, keys: list[str]) -> dict[str, Any]:
        core = self._core
        out, rest = core.pending_many(ns, keys)
        c = core.cache
        if c is None or not rest:
            return out
        try:
            got = c.get_many(ns, rest)
        except Exception as exc:
            core.failure("cache", exc)
            return out
        out.update(got if isinstance(got, Mapping) else {})
        return out

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
        self, cls: Any, call: Callable[[dict[str, Any]], Any], plan: Plan, looked_up: bool = False
    ) -> Any:
        core, h, key = self._core, plan.h, plan.key
        t0 = time.perf_counter()
        if key is None:
            resp = self._retrying(lambda: call(plan.body), h)
            h.duration_miss.observe(time.perf_counter() - t0)
            core.observe_final(h, plan.model, resp)
            return resp
        value = None if plan.looked_up else self._get(plan.ns, key)
        if value is not None and self._fresh(value, plan.model):
            hit = core.rebuild(cls, key, value)
            if hit is not None:
                h.hit()
                h.duration_hit.observe(time.perf_counter() - t0)
                return hit
        with self._flight_lock:  # single-flight: an identical call already in flight serves this one too
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = Flight(threading.Event())
        if not leader:
            flight.done.wait(core.flight_wait())
            shared = decode_full(cls, flight.value) if flight.value is not None else None
            if shared is not None:
                h.coalesce()
                h.duration_hit.observe(time.perf_counter() - t0)
                return shared
        h.miss()
        try:
            resp = self._retrying(lambda: call(plan.body), h)
            spent = time.perf_counter() - t0
            h.duration_miss.observe(spent)
            core.observe_final(h, plan.model, resp)
            if plan.op == "embeddings" or storable(resp):
                value = full_value(resp, self._digest(plan.model))
                flight.value = value
                self._set(plan.ns, {key: value}, spent)
            return resp
        finally:
            if leader:
                flight.done.set()
                with self._flight_lock:
                    self._flights.pop(key, None)

    def _stream(self, cls: Any, call: Callable[[dict[str, Any]], Any], plan: Plan) -> Iterator[Any]:
        core, h, key = self._core, plan.h, plan.key
        t0 = time.perf_counter()
        if key is not None:
            value = self._get(plan.ns, key)
            decoded = decode_stream(value) if value is not None and self._fresh(value, plan.model) else None
            if decoded is not None:
                h.hit()
                yield from replay(cls, decoded, self.settings.cache.replay == "paced")
                h.duration_hit.observe(time.perf_counter() - t0)
                return
            h.miss()
        rec = StreamRecorder(t0, record=key is not None)
        with self._sem:
            for part in self._open(lambda: call(plan.body), h):
                if not rec.n:
                    h.ttft.observe(time.perf_counter() - t0)
                rec.add(part)
                yield part
        spent = time.perf_counter() - t0
        h.duration_miss.observe(spent)
        if rec.final is not None:
            core.observe_final(h, plan.model, rec.final)
            if key is not None and storable(rec.final):
                value = stream_value(rec.chunks, rec.offsets, self._digest(plan.model))
                self._set(plan.ns, {key: value}, spent)

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

    def _embed(self, cls: Any, call: Callable[[dict[str, Any]], Any], plan: Plan) -> Any:
        core, h = self._core, plan.h
        assert plan.items is not None
        t0 = time.perf_counter()
        found = self._get_many(plan.ns, [k for _, k in plan.items])
        digest = self._digest(plan.model) if found else None
        vectors, missing = split_found(plan, found, digest)
        h.hit(len(plan.items) - len(missing))
        resp = None
        if missing:
            h.miss(len(missing))
            resp = self._retrying(lambda: call(plan.embed_body([t for t, _ in missing])), h)
            spent = time.perf_counter() - t0
            if len(resp.embeddings) != len(missing):  # not what we asked for: hand it back, store nothing
                return resp
            digest = self._digest(plan.model)
            self._set(plan.ns, fill_vectors(vectors, missing, resp, digest, plan), spent / len(missing))
            h.duration_miss.observe(spent)
            core.observe_final(h, plan.model, resp)
        else:
            h.duration_hit.observe(time.perf_counter() - t0)
        return embed_response(cls, plan, vectors, resp)
