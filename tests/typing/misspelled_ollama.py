"""Calls to the Ollama clients' public verbs with a misspelled keyword: each must be a mypy error (see
test_typing.py)."""

from __future__ import annotations

from ollama import Options

from infra.cache import Cache
from infra.ollama import AsyncOptimizedOllama, OllamaConfig, OptimizedOllama, route_official


def sync_verbs(c: OptimizedOllama) -> None:
    c.generate(model="m", promt="hi")  # type: ignore[call-overload]
    c.chat(model="m", mesages=[])  # type: ignore[call-overload]
    c.embed(model="m", imput="hi")  # type: ignore[call-arg]


async def async_verbs(c: AsyncOptimizedOllama) -> None:
    await c.generate(model="m", promt="hi")  # type: ignore[call-overload]
    await c.chat(model="m", mesages=[])  # type: ignore[call-overload]
    await c.embed(model="m", imput="hi")  # type: ignore[call-arg]


def layer_verbs(c: OptimizedOllama) -> None:
    c.embeddings(model="m", promt="hi")  # type: ignore[call-arg]
    c.generate(model="m", profil="stage1")  # type: ignore[call-overload]
    c.chat(model="m", messages=[], cach=False)  # type: ignore[call-overload]
    text = c.generate(model="m").respons  # type: ignore[attr-defined]
    route_official(cach=None)  # type: ignore[call-arg]
    route_official(cache="no")  # type: ignore[arg-type]
    OllamaConfig(runner={"num_ctx": [4096]})  # type: ignore[list-item]
    OllamaConfig(profiles={"stage1": {"temperature": None}})  # type: ignore[dict-item]
    del text


def tool(city: str) -> str:
    return city


def well_typed_calls_stay_clean(c: OptimizedOllama, cache: Cache) -> None:
    """No ignore here: what ollama-python's own types accept still type-checks (``object`` for its Any)."""
    reply = c.generate(model="m", prompt="hi", options={"temperature": 0.3}, profile="stage1")
    text: str | None = reply.response
    for part in c.generate(model="m", prompt="hi", stream=True, format={"type": "object"}):
        del part
    history = [{"role": "user", "content": "hi"}]
    c.chat(model="m", messages=history, tools=[tool], options=Options(num_ctx=4096), cache=False)
    c.embed(model="m", input=["a", "b"], cache=True)
    OptimizedOllama(cache=cache, timeout=5.0, headers={"x": "y"})
    OllamaConfig(
        runner={"num_thread": "auto", "llama3.1:8b": {"num_ctx": 8192}},
        profiles={"s": {"stop": ["\n"], "temperature": 0.3}},
    )
    with route_official(cache=cache):
        pass
    del text
