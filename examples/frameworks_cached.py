"""LangChain and LlamaIndex on Ollama, cached by perf-infra through public arguments only.

    python -m examples.frameworks_cached            # against the project's Ollama API test server

Each framework call runs the same prompts twice through the layer (cold, then warm); the script checks the
answers agree (and equal plain ChatOllama's) and prints how many inference requests the server saw and the
wall times. ChatOllama streams every call, so stream() and ainvoke() send the very request invoke() sent:
already cached on their "cold" run. Needs ``pip install 'perf-infra[frameworks]'``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

PROMPTS = [f"summarize reflection {i}: felt {'calm' if i % 2 else 'stressed'} after work" for i in range(8)]


def _requests(server: Any) -> int:
    r = server.stats()["requests"]
    return sum(r.get(k, 0) for k in ("chat", "generate", "embed", "embeddings"))


def _timed(server: Any, fn: Any) -> tuple[Any, float, int]:
    before, t0 = _requests(server), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, _requests(server) - before


def main() -> int:
    import httpx
    import ollama
    from langchain_ollama import ChatOllama, OllamaEmbeddings
    from llama_index.embeddings.ollama import OllamaEmbedding
    from llama_index.llms.ollama import Ollama

    from infra.cache import Cache, CacheConfig
    from infra.integrate import CachedOllamaTransport
    from infra.testing.ollama_server import OllamaTestServer

    with tempfile.TemporaryDirectory() as tmp, OllamaTestServer(token_latency=0.002) as srv:
        cache = Cache(CacheConfig(path=str(Path(tmp) / "cache.db")))
        t = CachedOllamaTransport(cache=cache)  # the one seam: an httpx transport, sync and async
        url = srv.url
        chat = ChatOllama(model="llama3.2:3b", base_url=url, temperature=0, client_kwargs={"transport": t})
        emb = OllamaEmbeddings(model="nomic-embed-text", base_url=url, client_kwargs={"transport": t})
        li_llm = Ollama(
            model="llama3.2:3b",
            base_url=url,
            request_timeout=30,
            client=ollama.Client(host=url, transport=t),
            async_client=ollama.AsyncClient(host=url, transport=t),
        )
        li_emb = OllamaEmbedding(model_name="nomic-embed-text", base_url=url, client_kwargs={"transport": t})
        plain_t = httpx.HTTPTransport()  # LangChain never closes its clients: own the connections here
        plain_chat = ChatOllama(
            model="llama3.2:3b", base_url=url, temperature=0, sync_client_kwargs={"transport": plain_t}
        )

        async def ainvoke_all() -> list[str]:
            out = [str((await chat.ainvoke(p)).content) for p in PROMPTS]
            await t.aclose()
            return out

        runs = {
            "LangChain ChatOllama.invoke": lambda: [chat.invoke(p).content for p in PROMPTS],
            "LangChain ChatOllama.stream": lambda: [[c.content for c in chat.stream(p)] for p in PROMPTS],
            "LangChain ChatOllama.ainvoke": lambda: asyncio.run(ainvoke_all()),
            "LangChain OllamaEmbeddings": lambda: emb.embed_documents(PROMPTS),
            "LlamaIndex Ollama.complete": lambda: [li_llm.complete(p).text for p in PROMPTS],
            "LlamaIndex OllamaEmbedding": lambda: li_emb.get_text_embedding_batch(PROMPTS),
        }
        for name, fn in runs.items():
            cold, cold_s, cold_n = _timed(srv, fn)
            warm, warm_s, warm_n = _timed(srv, fn)
            assert warm == cold, name
            print(
                f"{name:30s} cold {cold_s * 1e3:7.1f} ms ({cold_n} requests), "
                f"warm {warm_s * 1e3:6.1f} ms ({warm_n} requests)"
            )
        plain = [plain_chat.invoke(p).content for p in PROMPTS]
        assert plain == [chat.invoke(p).content for p in PROMPTS]
        print("plain ChatOllama answers equal the cached ones")
        plain_t.close()
        t.close()
        cache.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
