"""Calls to the Ollama clients' public verbs with a misspelled keyword: each must be a mypy error (see
test_typing.py)."""

from __future__ import annotations

from infra.ollama import AsyncOptimizedOllama, OptimizedOllama


def sync_verbs(c: OptimizedOllama) -> None:
    c.generate(model="m", promt="hi")  # type: ignore[call-overload]
    c.chat(model="m", mesages=[])  # type: ignore[call-overload]
    c.embed(model="m", imput="hi")  # type: ignore[call-arg]


async def async_verbs(c: AsyncOptimizedOllama) -> None:
    await c.generate(model="m", promt="hi")  # type: ignore[call-overload]
    await c.chat(model="m", mesages=[])  # type: ignore[call-overload]
    await c.embed(model="m", imput="hi")  # type: ignore[call-arg]
