"""Drive the fidelity worker over 200 inputs the same way in every mode; return what the caller saw.

Each call's result is recorded, then mutated by the caller (a list appended to, a key overwritten), then the
same call is made again and recorded: with the layer, a hit must be equal to and independent of what any
other call got."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

WORDS = ["calm", "stressed", "grateful", "family", "race", "boom", "tired", "joy", "work", "rain"]
# 200 inputs, 120 distinct (repeats are what a cache is for); some contain "boom" (check raises on them)
INPUTS = [
    " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 2 + i % 4)) + f" #{i % 120}" for i in range(200)
]
SETTINGS = [
    {"weight": 1.0, "model": "llama3.2:3b"},
    {"weight": 2.5, "model": "llama3.2:3b"},
    {"weight": 1.0, "model": "qwen2.5:7b"},
]


def show(value: Any) -> Any:
    """JSON form that keeps the type: a pydantic model says which one."""
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return {"__model__": type(value).__qualname__, **dump(mode="json")}
    return value


def call(fn: Callable[[], Any]) -> Any:
    try:
        return ["ok", show(fn())]
    except Exception as exc:
        return ["raised", type(exc).__name__, str(exc)]


def drive(make: Callable[..., Any], *, streams: bool) -> list[Any]:
    workers = [make(**s) for s in SETTINGS]
    out: list[Any] = []
    for i, text in enumerate(INPUTS):
        w = workers[i % len(workers)]
        r = w.score(text, scale=1 + i % 2)
        out.append(["score", show(r)])
        r["tokens"].append("MUTATED")
        r["nested"]["bytes"].clear()
        r["value"] = -1
        out.append(["score again", show(w.score(text, scale=1 + i % 2))])
        m = w.analyse(text)
        out.append(["analyse", show(m)])
        m.tags.append("MUTATED")
        m.detail["head"].append(-1)
        out.append(["analyse again", show(w.analyse(text))])
        out.append(["check", call(lambda w=w, text=text: w.check(text))])
        if streams:
            chunks = list(w.stream(text))
            out.append(["stream", chunks])
            if chunks:
                chunks[0]["word"] = "MUTATED"
            out.append(["stream again", list(w.stream(text))])
    return out
