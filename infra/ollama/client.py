"""``OptimizedOllama``: the official ``ollama.Client`` itself, with tuning and a cache in front of it.

A subclass: every public method is the official one (same signatures, same request bodies, same errors); the
layer sits in ``_request``, where the body the official client serialized is planned by the shared I/O-free
core (:meth:`~infra.ollama._core.ClientCore.plan`): runner options and keep_alive filled in only where the
call left them out, the cache key, a real timeout, retries before the first token, a concurrency limit and
single-flight. With the layer off (``PERF_ENABLED=0``, ``ollama.enabled: false`` or
``OllamaConfig(enabled=False)``) ``_request`` is the official one and requests are byte-identical.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ollama import ResponseError
from ollama._client import Client as _Official

from ._core import Attempts, Flight, Handles, MemoEntry, Plan, Scope, official_signature
from ._flows import Digest, Effect, Flow, Get, GetMany, Land, Put, Run, Send, Share, embed, full, stream_end
from ._helpers import WARM_OPTIONS, warm_messages
from ._layer import LayerMixin
from ._values import decode_stream, tagged
from .digests import BOOK
from .stream import StreamRecorder, replay
from .warmup import KeepWarm

if TYPE_CHECKING:
    from ollama import ChatResponse, EmbeddingsResponse, EmbedResponse, GenerateResponse

    from ._verbs import Chat, Embed, Embeddings, Generate

__all__ = ["OptimizedOllama"]


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

    # -- the layer's per-call keywords -----------------------------------------------------------------------

    if TYPE_CHECKING:  # the official signatures plus the layer's keywords, typed once in _verbs
        generate: Generate[GenerateResponse, Iterator[GenerateResponse]]
        chat: Chat[ChatResponse, Iterator[ChatResponse]]
        embed: Embed[EmbedResponse]
        embeddings: Embeddings[EmbeddingsResponse]
    else:

        @official_signature(_Official.generate, "profile", "cache")
        def generate(
            self, *args: object, profile: str | None = None, cache: bool | None = None, **kwargs: object
        ) -> GenerateResponse | Iterator[GenerateResponse]:
            """``ollama.Client.generate`` (``GenerateResponse``, or an iterator of them when streaming)."""
            return self._layered("generate", _Official.generate, profile, cache, args, kwargs)

        @official_signature(_Official.chat, "profile", "cache")
        def chat(
            self, *args: object, profile: str | None = None, cache: bool | None = None, **kwargs: object
        ) -> ChatResponse | Iterator[ChatResponse]:
            """``ollama.Client.chat`` (``ChatResponse``, or an iterator of them when streaming)."""
            return self._layered("chat", _Official.chat, profile, cache, args, kwargs)

        @official_signature(_Official.embed, "cache")
        def embed(self, *args: object, cache: bool | None = None, **kwargs: object) -> EmbedResponse:
            """``ollama.Client.embed``, cached per input: only inputs not in the cache are sent, once each."""
            with Scope(None, False, None, cache):
                return super().embed(*args, **kwargs)

        @official_signature(_Official.embeddings, "cache")
        def embeddings(
            self, *args: object, cache: bool | None = None, **kwargs: object
        ) -> EmbeddingsResponse:
            """The deprecated single-prompt ``ollama.Client.embeddings``, cached whole."""
            with Scope(None, False, None, cache):
                return super().embeddings(*args, **kwargs)

    def _layered(
        self,
        op: str,
        official: Callable[..., Any],
        profile: str | None,
        cache: bool | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """generate/chat: a memoized call's hit without building the body, else the official method with the
        layer's keywords carried to ``_request``."""
        core = self._core
        mk = core.memo_key(op, profile, args, kwargs) if cache is None else None
        entry = core.memo.get(mk) if mk is not None else None
        if entry is not None:  # the key is known: a hit needs no body built
            hit = self._memo_hit(entry)
            if hit is not None:
                return hit
        with Scope(mk, entry is not None, profile, cache):  # (a memo entry that missed: looked up once)
            return official(self, *args, **kwargs)

    # -- the one place the layer meets the official client ---------------------------------------------------

    def _request(self, cls: Any, *args: Any, stream: bool = False, **kwargs: Any) -> Any:
        plan = self._core.prepare(self._base_url, cls, args, kwargs, stream)
        if plan is None:
            return _Official._request(self, cls, *args, stream=stream, **kwargs)

        def call(body: dict[str, Any]) -> Any:
            return _Official._request(self, cls, *args, stream=stream, **{**kwargs, "json": body})

        if stream and plan.items is None:
            return self._stream(cls, call, plan)
        return self._drive((embed if plan.items is not None else full)(self._core, cls, plan), call)

    # -- warmup ----------------------------------------------------------------------------------------------

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
        msgs = warm_messages(model, system_prompt)
        if msgs is not None:
            try:
                self.chat(model, msgs, options=WARM_OPTIONS, cache=False)
                return
            except ResponseError as exc:
                if exc.status_code != 400:  # 400: the model can't chat (an embedding model)
                    raise
        self.embed(model, "warmup", cache=False)

    def keep_warm(self, models: Sequence[str], *, interval: float | None = None) -> KeepWarm:
        """Start a daemon thread reloading ``models`` before their /api/ps ``expires_at``; ``stop()`` it."""
        kw = KeepWarm(
            self.ps, self._warm_one, self._core.failure, list(models), interval=self._interval(interval)
        )
        kw.start()
        return kw

    # -- the I/O path: each flow's effects, performed --------------------------------------------------------

    def _drive(self, flow: Flow, call: Callable[[dict[str, Any]], Any]) -> Any:
        """Run ``flow`` (see ``_flows``), performing each effect it yields; its return value is the call's."""
        run = Run(flow)
        while (effect := run.step()) is not None:
            try:
                run.answer = self._perform(effect, call)
            except BaseException as exc:  # handed to the flow, whose finally blocks still run
                run.failed = exc
        return run.result

    def _perform(self, effect: Effect, call: Callable[[dict[str, Any]], Any]) -> Any:
        match effect:
            case Get(ns, key):
                return self._get(ns, key)
            case Digest(model):
                return self._digest(model)
            case Send(body, plan):
                return self._retrying(lambda: call(body), plan.h)
            case Put(ns, items, cost):
                return self._set(ns, items, cost)
            case GetMany(ns, keys):
                return self._get_many(ns, keys)
            case Share(key):
                return self._share(key)
            case Land(key, flight):
                return self._land(key, flight)
        raise AssertionError(f"unknown effect {effect!r}")

    def _digest(self, model: str) -> str | None:
        """The model's current digest: /api/tags read once per host per process (see ``digests``)."""
        if not self.settings.resolve_digests:
            return None
        host = self._base_url
        if BOOK.needs_read(host):
            try:
                BOOK.apply(host, _Official.list(self))
            except Exception as exc:  # the call itself reports a down server; entries just can't be tagged
                BOOK.failed(host, exc)
        return BOOK.digest(host, model)

    def _memo_hit(self, e: MemoEntry) -> Any:
        t0 = time.perf_counter()
        value = self._get(e.ns, e.key)
        if value is None or not self._fresh(value, e.model):
            return None
        return self._core.served(e, value, t0)

    def _fresh(self, value: Any, model: str) -> bool:
        return tagged(value) and value["d"] == self._digest(model)

    def _get(self, ns: str, key: str) -> Any:
        value, c = self._core.source(ns, key)
        if c is None:
            return value
        try:
            return c.get(ns, key, default=None)
        except Exception as exc:
            self._core.failure("cache", exc)
            return None

    def _set(self, ns: str, items: dict[str, Any], cost: float) -> None:
        c = self._core.direct_store(ns, items, cost)
        if c is None:
            return
        try:
            for k, v in items.items():
                c.set(ns, k, v, cost=cost)
        except Exception as exc:
            self._core.failure("cache", exc)

    def _get_many(self, ns: str, keys: list[str]) -> dict[str, Any]:
        out, rest, c = self._core.source_many(ns, keys)
        if c is None:
            return out
        try:
            got = c.get_many(ns, rest)
        except Exception as exc:
            self._core.failure("cache", exc)
            return out
        out.update(got if isinstance(got, Mapping) else {})
        return out

    def _share(self, key: str) -> tuple[Flight, bool]:
        with self._flight_lock:  # single-flight: an identical call already in flight serves this one too
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = Flight(threading.Event())
        if not leader:
            flight.done.wait(self._core.flight_wait())
        return flight, leader

    def _land(self, key: str, flight: Flight) -> None:
        flight.done.set()
        with self._flight_lock:
            self._flights.pop(key, None)

    def _retrying(self, call: Callable[[], Any], h: Handles) -> Any:
        attempts = Attempts(self._core, h)
        with self._sem:
            while True:
                try:
                    return call()
                except Exception as exc:
                    time.sleep(attempts.delay(exc))

    def _stream(self, cls: Any, call: Callable[[dict[str, Any]], Any], plan: Plan) -> Iterator[Any]:
        h, key = plan.h, plan.key
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
        rec = StreamRecorder(t0, h.ttft, record=key is not None)
        with self._sem:
            for part in self._open(lambda: call(plan.body), h):
                rec.add(part)
                yield part
        self._drive(stream_end(self._core, plan, rec), call)

    def _open(self, call: Callable[[], Any], h: Handles) -> Iterator[Any]:
        """The official stream, retried only until its first chunk arrives."""
        attempts = Attempts(self._core, h)
        while True:
            it = iter(call())
            try:
                first = next(it)
            except StopIteration:
                return
            except Exception as exc:
                time.sleep(attempts.delay(exc))
                continue
            break
        yield first
        try:
            yield from it
        except Exception:
            h.errors.inc()
            raise
