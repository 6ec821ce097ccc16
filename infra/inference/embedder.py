"""``CachedEmbedder``: per-text caching, in-batch dedupe and micro-batching around any embed function.

Flow of ``embed(texts)``: drop duplicate texts, look every text up in the cache under
``make_key(namespace, model_id, text)``, send only the misses through a ``MicroBatcher`` (so
misses from concurrent callers share one model call, deduplicated again across callers), store
the new vectors, and return one vector per input text in input order.

The cache fails open: if a lookup or a store fails, the texts are embedded anyway, the failure
is counted in ``stats`` and logged once. Vectors are returned and cached as ``list[float]``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict, cast

from infra.inference.batcher import MicroBatcher

if TYPE_CHECKING:
    # typing.Unpack is 3.11+; mypy knows typing_extensions without it installed, and the annotation is
    # never evaluated at run time (from __future__ import annotations)
    from typing_extensions import Unpack

    from infra.cache import Cache

__all__ = ["CachedEmbedder", "EmbedderStats"]

log = logging.getLogger("infra.inference")

Vector = list[float]


class Vectors(Protocol):
    """What an embed function returns: one vector per text, sized and iterable (a list of lists of
    floats, a 2-D numpy array, a list of torch tensors)."""

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[object]: ...


EmbedFn = Callable[[list[str]], Vectors]


class SentenceEncoder(Protocol):
    """What ``for_sentence_transformer`` calls: ``SentenceTransformer.encode``."""

    def encode(
        self,
        sentences: list[str],
        *,
        batch_size: int = ...,
        show_progress_bar: bool = ...,
        convert_to_numpy: bool = ...,
        normalize_embeddings: bool = ...,
    ) -> object: ...


class _EmbedResponse(Protocol):
    def __getitem__(self, key: str, /) -> object: ...


class OllamaEmbedClient(Protocol):
    """What ``for_ollama`` calls: a sync ``ollama.Client``'s ``embed``."""

    def embed(self, *, model: str, input: list[str]) -> _EmbedResponse | Mapping[str, object]: ...


class EmbedderOptions(TypedDict, total=False):
    """The ``CachedEmbedder`` keywords the ``for_*`` constructors pass through (see ``__init__``)."""

    namespace: str
    cache: Cache | Literal[False] | None
    ttl: float | None
    max_batch_size: int
    max_wait_ms: float
    max_queue: int
    name: str | None


def _to_list(vec: object) -> Vector:
    """numpy / torch vectors and plain sequences → ``list[float]`` (JSON-safe for any cache codec)."""
    tolist = getattr(vec, "tolist", None)
    if tolist is not None:
        return list(tolist())
    return [float(x) for x in cast("Sequence[float]", vec)]


class EmbedderStats:
    """Counts since construction: cache ``hits``/``misses``, texts ``computed``, ``deduped`` duplicates,
    ``cache_errors`` (lookups or stores that failed open)."""

    __slots__ = ("cache_errors", "computed", "deduped", "hits", "misses")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.computed = 0
        self.deduped = 0
        self.cache_errors = 0

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class _FailOpen:
    """The embedder's cache, failing open: opened on first use (``get_cache()`` unless one was given); a
    failure is counted in ``cache_errors``, logged once, and the call goes on uncached."""

    __slots__ = ("_cache", "_logged", "_model_id", "_stats", "reading", "writing")

    def __init__(self, cache: Cache | Literal[False] | None, model_id: str, stats: EmbedderStats) -> None:
        self._cache: Cache | Literal[False] | None = cache
        self._logged = False
        self._model_id = model_id
        self._stats = stats
        self.reading = self.fail_open("cache lookup")  # built once: they hold no state of a call
        self.writing = self.fail_open("cache store")

    def store(self) -> Any:
        """The cache, or None (none wanted, or opening it failed)."""
        if self._cache is None:
            with self.fail_open("opening the cache"):
                from infra.cache import get_cache

                self._cache = get_cache()
            if self._cache is None:  # it failed: don't try again
                self._cache = False
        return self._cache or None

    def fail_open(self, what: str) -> _FailingOpen:
        """A context manager: an ``Exception`` in its block is counted and logged (the first only), not
        raised."""
        return _FailingOpen(self, what)

    def failed(self, exc: Exception, what: str) -> None:
        self._stats.cache_errors += 1
        if not self._logged:
            self._logged = True
            log.warning(
                "CachedEmbedder %r: %s failed (%s: %s); embedding uncached",
                self._model_id,
                what,
                type(exc).__name__,
                exc,
            )


class _FailingOpen:
    """``_FailOpen.fail_open``'s context manager (a class: a generator-based one cost ~1 us a use, a tenth
    of a cached ``embed_one``)."""

    __slots__ = ("owner", "what")

    def __init__(self, owner: _FailOpen, what: str) -> None:
        self.owner = owner
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, tp: object, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, Exception):
            self.owner.failed(exc, self.what)
            return True
        return False


class _Call:
    """One ``embed`` call's decisions, I/O-free: the texts deduplicated, their keys, the vectors found,
    the texts to compute, the entries to store and the answer in input order. ``store`` is the cache to
    read, or None; the call writes to it only once its keys were made (``keys``)."""

    __slots__ = ("got", "keys", "stats", "store", "texts", "uniq")

    def __init__(self, stats: EmbedderStats, texts: Sequence[str], store: Any) -> None:
        self.stats = stats
        self.texts = texts
        self.uniq = list(dict.fromkeys(texts))
        stats.deduped += len(texts) - len(self.uniq)
        self.store: Any = store if self.uniq else None
        self.keys: list[str] = []
        self.got: dict[str, Vector] = {}

    def keyed(self, namespace: str, model_id: str) -> list[str]:
        """The texts' keys (kept: a call whose keys couldn't be made stores nothing)."""
        from infra.cache import make_key

        self.keys = [make_key(namespace, model_id, t) for t in self.uniq]
        return self.keys

    def found(self, found: Mapping[str, Any]) -> None:
        """The cached vectors among what a ``get_many`` returned."""
        from infra.cache import MISSING

        got = self.got
        for t, k in zip(self.uniq, self.keys, strict=True):
            v = found.get(k, MISSING)
            if v is not MISSING:
                got[t] = v

    def misses(self) -> list[str]:
        """The texts to compute; counts hits and misses."""
        misses = [t for t in self.uniq if t not in self.got]
        self.stats.hits += len(self.uniq) - len(misses)
        self.stats.misses += len(misses)
        return misses

    def computed(self, misses: list[str], vectors: list[Vector]) -> dict[str, Vector]:
        """Take the computed vectors; the cache entries (key -> vector) to store, none without a store."""
        new = dict(zip(misses, vectors, strict=True))
        self.got.update(new)
        if not self.keys:
            return {}
        key_of = dict(zip(self.uniq, self.keys, strict=True))
        return {key_of[t]: v for t, v in new.items()}

    def result(self) -> list[Vector]:
        got = self.got
        return [got[t] for t in self.texts]


class CachedEmbedder:
    """Embed texts with caching and dynamic batching around ``embed_fn(list[str]) -> vectors``.

    ``model_id`` goes into every key (a different model never reads another's vectors). ``cache``:
    an ``infra.cache`` cache (default: ``get_cache()``, resolved on first use) or ``False`` for none.
    ``inference_mode``: run ``embed_fn`` under ``torch.inference_mode()`` when torch is loaded (no
    autograd bookkeeping). Batching settings as in ``MicroBatcher``.
    """

    def __init__(
        self,
        embed_fn: EmbedFn,
        *,
        model_id: str,
        namespace: str = "embeddings",
        cache: Cache | Literal[False] | None = None,
        ttl: float | None = None,
        max_batch_size: int = 32,
        max_wait_ms: float = 2.0,
        max_queue: int = 1024,
        inference_mode: bool = True,
        name: str | None = None,
    ) -> None:
        if not model_id:
            raise ValueError("CachedEmbedder needs a model_id (it is part of every cache key)")
        self.embed_fn = embed_fn
        self.model_id = model_id
        self.namespace = namespace
        self.ttl = ttl
        self.inference_mode = inference_mode
        self.stats = EmbedderStats()
        self._cache = _FailOpen(cache, model_id, self.stats)
        self.batcher: MicroBatcher[str, Vector] = MicroBatcher(
            self._batched,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
            name=name or f"embed:{model_id}",
        )

    # -- constructors for common models ----------------------------------------------------------

    @classmethod
    def for_sentence_transformer(
        cls,
        model: SentenceEncoder,
        *,
        model_id: str,
        normalize: bool = False,
        inference_mode: bool = True,
        **options: Unpack[EmbedderOptions],
    ) -> CachedEmbedder:
        """Wrap a ``sentence_transformers.SentenceTransformer`` (one ``encode`` call per batch).

        ``model_id`` names the model in the cache keys (its name or path; add a revision if you
        swap weights under the same name). The other keywords are the constructor's.
        """

        def embed(texts: list[str]) -> Vectors:
            return model.encode(  # type: ignore[return-value]  # an ndarray: sized and iterable
                texts,
                batch_size=max(1, len(texts)),
                convert_to_numpy=True,
                normalize_embeddings=normalize,
                show_progress_bar=False,
            )

        model_id += ":normalized" if normalize else ""
        return cls(embed, model_id=model_id, inference_mode=inference_mode, **options)

    @classmethod
    def for_ollama(
        cls,
        client: OllamaEmbedClient,
        model: str,
        **options: Unpack[EmbedderOptions],
    ) -> CachedEmbedder:
        """Wrap a sync ``ollama.Client`` (its ``embed(model=..., input=[...])``); the other keywords
        are the constructor's."""

        def embed(texts: list[str]) -> Vectors:
            response = client.embed(model=model, input=texts)
            return cast(Vectors, response["embeddings"])

        return cls(embed, model_id=f"ollama:{model}", inference_mode=False, **options)

    # -- the batched call ------------------------------------------------------------------------

    def _batched(self, texts: list[str]) -> list[Vector]:
        """Called by the batcher's worker: dedupe across callers, run the model once."""
        uniq = list(dict.fromkeys(texts))
        self.stats.deduped += len(texts) - len(uniq)
        torch = sys.modules.get("torch") if self.inference_mode else None
        if torch is not None:
            with torch.inference_mode():
                vecs = self.embed_fn(uniq)
        else:
            vecs = self.embed_fn(uniq)
        if len(vecs) != len(uniq):
            raise ValueError(f"embed_fn returned {len(vecs)} vectors for {len(uniq)} texts")
        self.stats.computed += len(uniq)
        by_text = {t: _to_list(v) for t, v in zip(uniq, vecs, strict=True)}
        return [by_text[t] for t in texts]

    # -- public API ------------------------------------------------------------------------------

    def _lookup(self, texts: Sequence[str]) -> _Call:
        """The call: its texts deduplicated and the cache to read (None: none, or no texts)."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts; use embed_one() for a single text")
        return _Call(self.stats, texts, self._cache.store() if texts else None)

    # Sync and async differ only in the awaiting: the decisions are _Call's, the failures _FailOpen's.

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """One vector per text, in order (blocking; from threads or sync code)."""
        call = self._lookup(texts)
        if call.store is not None:
            with self._cache.reading:
                keys = call.keyed(self.namespace, self.model_id)
                call.found(call.store.get_many(self.namespace, keys))
        misses = call.misses()
        if misses:
            entries = call.computed(misses, self.batcher.submit_many(misses))
            if entries:
                with self._cache.writing:
                    call.store.set_many(self.namespace, entries, ttl=self.ttl)
        return call.result()

    async def aembed(self, texts: Sequence[str]) -> list[Vector]:
        """Async ``embed``: the model runs on the batcher's thread; the loop never blocks on it."""
        call = self._lookup(texts)
        if call.store is not None:
            with self._cache.reading:
                keys = call.keyed(self.namespace, self.model_id)
                call.found(await call.store.aget_many(self.namespace, keys))
        misses = call.misses()
        if misses:
            entries = call.computed(misses, await self.batcher.asubmit_many(misses))
            if entries:
                with self._cache.writing:
                    await call.store.aset_many(self.namespace, entries, ttl=self.ttl)
        return call.result()

    def embed_one(self, text: str) -> Vector:
        """The vector of one text."""
        return self.embed([text])[0]

    async def aembed_one(self, text: str) -> Vector:
        """Async ``embed_one``."""
        return (await self.aembed([text]))[0]

    def close(self) -> None:
        """Stop the batcher's worker (queued texts finish first)."""
        self.batcher.close()

    def __enter__(self) -> CachedEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CachedEmbedder(model_id={self.model_id!r}, namespace={self.namespace!r})"
