"""``CachedOllamaTransport``: the cache under any framework that talks to Ollama through the official client.

LangChain's ``ChatOllama`` / ``OllamaEmbeddings`` and LlamaIndex's ``Ollama`` / ``OllamaEmbedding`` all
build an official ``ollama.Client``, which is an ``httpx`` client, and all accept its keyword arguments
publicly (``client_kwargs`` / ``sync_client_kwargs`` / ``async_client_kwargs``, or a ``client=``). An
httpx *transport* is the one seam they all share, so the recipe needs no private attribute::

    from infra.integrate import CachedOllamaTransport
    t = transport = CachedOllamaTransport()             # one object serves sync and async clients
    llm = ChatOllama(model="llama3.2:3b", client_kwargs={"transport": transport})
    emb = OllamaEmbeddings(model="nomic-embed-text", client_kwargs={"transport": transport})
    llm = llama_index.llms.ollama.Ollama(model=..., client=ollama.Client(host, transport=transport),
                                         async_client=ollama.AsyncClient(host, transport=transport))
    emb = llama_index.embeddings.ollama.OllamaEmbedding(model_name=..., client_kwargs={"transport": t})

What is cached: a 200 answer of ``POST /api/chat``, ``/api/generate``, ``/api/embed`` and
``/api/embeddings``, keyed by the path and the request's JSON body (``keep_alive`` left out: it changes
how long the model stays loaded, never the answer), stored as the response's exact bytes and headers. A
hit hands the client those bytes, so the official client, and the framework above it, build exactly what
the first call built: same text, same chunks for a stream, same metadata (including the first call's
``created_at`` and durations). A stream is stored only once the client has read it to the end; one that
fails or is abandoned early is never stored. Everything else (``/api/tags``, ``/api/show``, errors)
passes through untouched. The cache is ``get_cache()`` (or the one given), namespace ``ollama_http``; any
cache failure passes the request through (fail open).

Sampling is the caller's business, as with any ``@cached`` function: a request with ``temperature > 0``
and no ``seed`` is cached too, so its first answer is the one every later call gets.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import httpx

from infra.cache.keys import make_key

if TYPE_CHECKING:
    from infra.cache import Cache

__all__ = ["CACHED_PATHS", "CachedOllamaTransport"]

CACHED_PATHS = frozenset({"/api/chat", "/api/generate", "/api/embed", "/api/embeddings"})
_KEY_VERSION = 1


class CachedOllamaTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx transport (sync and async) that caches Ollama's inference answers; see the module doc."""

    def __init__(
        self,
        *,
        cache: Cache | None = None,
        namespace: str = "ollama_http",
        ttl: float | str | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._cache = cache
        self.namespace = namespace
        self.ttl = ttl
        self._sync = transport
        self._async = async_transport

    # ------------------------------------------------------------------ decisions (no I/O)
    def cache(self) -> Cache:
        if self._cache is not None:
            return self._cache
        from infra.cache import get_cache

        return get_cache()

    def key(self, request: httpx.Request) -> str | None:
        """The cache key of ``request``, or None when it isn't a cacheable inference call."""
        if request.method != "POST" or request.url.path not in CACHED_PATHS:
            return None
        try:
            body = json.loads(request.content or b"{}")
        except (ValueError, httpx.RequestNotRead):
            return None
        if not isinstance(body, dict):
            return None
        body.pop("keep_alive", None)
        try:
            return make_key(self.namespace, request.url.path, body, version=_KEY_VERSION)
        except Exception:
            return None

    def _target(self, request: httpx.Request) -> tuple[str | None, Any]:
        """``request``'s cache key and the cache to ask and store in: None for a call that isn't cached, or
        with the cache off or unavailable (fail open: the request goes out as it is)."""
        key = self.key(request)
        if key is None:
            return None, None
        try:
            cache = self.cache()
            return key, (cache if cache.enabled else None)
        except Exception:
            return key, None

    @staticmethod
    def _replay(request: httpx.Request, stored: Any) -> httpx.Response | None:
        if not isinstance(stored, dict) or not isinstance(stored.get("body"), bytes):
            return None
        headers = [(str(k), str(v)) for k, v in stored.get("headers", ())]
        return httpx.Response(
            int(stored.get("status", 200)), headers=headers, content=stored["body"], request=request
        )

    # ------------------------------------------------------------------ sync
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._sync is None:
            self._sync = httpx.HTTPTransport()
        key, cache = self._target(request)
        if key is not None and cache is not None:
            try:
                hit = self._replay(request, cache.get(self.namespace, key, None))
            except Exception:
                cache, hit = None, None
            if hit is not None:
                return hit
        response = self._sync.handle_request(request)
        return self._recorded(request, response, cache, key, _Recording)

    def _recorded(
        self, request: httpx.Request, response: httpx.Response, cache: Any, key: str | None, recording: Any
    ) -> httpx.Response:
        """``response`` as it came, or (a 200 that may be stored) one whose body is recorded as it streams."""
        if cache is None or key is None or not cache.enabled or response.status_code != 200:
            return response
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=recording(self, cache, key, response),
            extensions=response.extensions,
            request=request,
        )

    def close(self) -> None:
        """Close the sync connection pool (a later request opens a new one)."""
        sync, self._sync = self._sync, None
        if sync is not None:
            sync.close()

    # ------------------------------------------------------------------ async
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._async is None:
            self._async = httpx.AsyncHTTPTransport()
        key, cache = self._target(request)
        if key is not None and cache is not None:
            try:
                hit = self._replay(request, await cache.aget(self.namespace, key, None))
            except Exception:
                cache, hit = None, None
            if hit is not None:
                return hit
        response = await self._async.handle_async_request(request)
        return self._recorded(request, response, cache, key, _AsyncRecording)

    async def aclose(self) -> None:
        """Close the async connection pool; call it on the loop that used it (a later request, on any
        loop, opens a new one)."""
        pool, self._async = self._async, None
        if pool is not None:
            await pool.aclose()


def _record(response: httpx.Response, chunks: list[bytes]) -> dict[str, Any]:
    """What a hit replays: the status, the headers as sent, the body's exact bytes."""
    return {
        "status": response.status_code,
        "headers": [[k, v] for k, v in response.headers.multi_items()],
        "body": b"".join(chunks),
    }


class _Recording(httpx.SyncByteStream):
    """Passes the upstream body through chunk by chunk, and stores it once read to the end."""

    def __init__(self, owner: CachedOllamaTransport, cache: Any, key: Any, response: httpx.Response) -> None:
        self.owner, self.cache, self.key, self.response = owner, cache, key, response

    def __iter__(self) -> Iterator[bytes]:
        chunks: list[bytes] = []
        for chunk in self.response.stream:  # type: ignore[union-attr]
            chunks.append(chunk)
            yield chunk
        # complete: worth keeping (an exception above or an early close never gets here); fail open
        with contextlib.suppress(Exception):
            self.cache.set(self.owner.namespace, self.key, _record(self.response, chunks), self.owner.ttl)

    def close(self) -> None:
        self.response.close()


class _AsyncRecording(httpx.AsyncByteStream):
    def __init__(self, owner: CachedOllamaTransport, cache: Any, key: Any, response: httpx.Response) -> None:
        self.owner, self.cache, self.key, self.response = owner, cache, key, response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks: list[bytes] = []
        async for chunk in self.response.stream:  # type: ignore[union-attr]
            chunks.append(chunk)
            yield chunk
        with contextlib.suppress(Exception):
            await self.cache.aset(
                self.owner.namespace, self.key, _record(self.response, chunks), self.owner.ttl
            )

    async def aclose(self) -> None:
        await self.response.aclose()
