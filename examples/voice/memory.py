"""MemoryExtractor: GraphRAG context for a query (seed 000, task 1: neighbours fetched concurrently)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import ollama

from examples.voice.settings import Settings


class SearchStore:
    """The memory service: semantic entity search, neighbour traversal, community search (HTTP)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings or Settings()
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(base_url=self._settings.search_url, timeout=10.0)
        return self._http

    async def search_entities_semantic(
        self, query_embedding: list[float], top_k: int = 5
    ) -> list[dict[str, Any]]:
        r = await self._client().post(
            "/v1/entities/search", json={"query_embedding": query_embedding, "top_k": top_k}
        )
        r.raise_for_status()
        return list(r.json())

    async def get_entity_neighbors(self, entity_id: str, max_depth: int = 1) -> list[dict[str, Any]]:
        r = await self._client().get(f"/v1/entities/{entity_id}/neighbors", params={"max_depth": max_depth})
        r.raise_for_status()
        return list(r.json())

    async def search_communities(self, query_embedding: list[float], top_k: int = 2) -> list[dict[str, Any]]:
        r = await self._client().post(
            "/v1/communities/search", json={"query_embedding": query_embedding, "top_k": top_k}
        )
        r.raise_for_status()
        return list(r.json())

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


class OllamaEmbedder:
    """Query embeddings from Ollama."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings or Settings()
        self._client = ollama.AsyncClient(host=self._settings.ollama_host)

    async def embed_query(self, text: str) -> list[float]:
        r = await self._client.embed(model=self._settings.embed_model, input=text)
        return list(r.embeddings[0])

    async def aclose(self) -> None:
        await self._client.close()


class MemoryExtractor:
    """Assembles the memory block of the prompt from the user's knowledge graph."""

    def __init__(
        self, store: SearchStore, embedder: OllamaEmbedder, settings: Settings | None = None
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._settings = settings or Settings()

    async def pre_load_context(self, query: str) -> str:
        """Search GraphRAG (entities + neighbors + communities) and assemble Block 2 context."""
        settings = self._settings
        query_embedding = await self._embedder.embed_query(query)

        parts: list[str] = []
        token_estimate = 0

        def _add(text: str) -> bool:
            nonlocal token_estimate
            token_estimate += len(text) // 4
            if token_estimate > settings.rag_context_target_tokens:
                return False
            parts.append(text)
            return True

        # 1. Entity semantic search + neighbor traversal (concurrent)
        entities = await self._store.search_entities_semantic(query_embedding=query_embedding, top_k=5)
        neighbor_lists = await asyncio.gather(
            *(self._store.get_entity_neighbors(entity["id"], max_depth=1) for entity in entities)
        )
        for entity, neighbors in zip(entities, neighbor_lists, strict=True):
            line = f"- {entity['name']} ({entity['entity_type']}): {entity['description']}"
            if not _add(line):
                break
            for n in neighbors[:3]:
                nline = f"  > {n['name']}: {n['description']}"
                if not _add(nline):
                    break

        # 2. Community summaries
        communities = await self._store.search_communities(
            query_embedding=query_embedding, top_k=settings.rag_top_k
        )
        for community in communities:
            if not _add(community["summary"]):
                break

        return "\n".join(parts) if parts else "(no memory context)"
