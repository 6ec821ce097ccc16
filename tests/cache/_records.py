"""Record types and cached functions that return them, for the restart tests (issue 14, item 3).

Run as a script, it is one "process" of a test: ``python -m tests.cache._records DB OUT_JSON``, where each
function reports to OUT_JSON whether it ran (computed) and what it returned.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from typing import Any, NamedTuple

import pydantic

from infra.cache import Cache, CacheConfig, cached

RUNS: list[str] = []


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(NamedTuple):
    x: float
    y: float


class Tag(pydantic.BaseModel):
    name: str
    weight: float = 1.0


class Doc(pydantic.BaseModel):
    title: str
    tags: list[Tag]
    color: Color
    note: str | None = None  # left unset: model_fields_set must come back the same


@dataclasses.dataclass(frozen=True)
class Score:
    label: str
    value: float
    where: Point
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def build(cache: Cache) -> dict[str, Any]:
    """The cached functions, each recording in ``RUNS`` when it really runs."""

    @cached(namespace="records", cache=cache)
    def doc(n: int) -> Doc:
        RUNS.append("doc")
        return Doc(title=f"t{n}", tags=[Tag(name="a"), Tag(name="b", weight=2.5)], color=Color.BLUE)

    @cached(namespace="records", cache=cache)
    def score(n: int) -> Score:
        RUNS.append("score")
        return Score("s", n / 3, Point(1.0, -0.0), {"k": [1, 2]})

    @cached(namespace="records", cache=cache)
    def color(n: int) -> Color:
        RUNS.append("color")
        return Color.RED

    @cached(namespace="records", cache=cache)
    def point(n: int) -> Point:
        RUNS.append("point")
        return Point(float(n), 2.0)

    @cached(namespace="records", cache=cache)
    def embed(n: int) -> Any:
        from ollama import EmbedResponse

        RUNS.append("embed")
        return EmbedResponse(model="m", embeddings=[[0.25, float(n)]], total_duration=5)

    @cached(namespace="records", cache=cache)
    def chat(n: int) -> Any:
        from ollama import ChatResponse, Message

        RUNS.append("chat")
        return ChatResponse(model="m", message=Message(role="assistant", content=f"hi {n}"), done=True)

    @cached(namespace="records", cache=cache)
    def ai(n: int) -> Any:
        from langchain_core.messages import AIMessage

        RUNS.append("ai")
        return AIMessage(
            content=f"answer {n}",
            tool_calls=[{"name": "f", "args": {"a": n}, "id": "c1"}],
            usage_metadata={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
        )

    return {
        "doc": doc,
        "score": score,
        "color": color,
        "point": point,
        "embed": embed,
        "chat": chat,
        "ai": ai,
    }


def describe(v: Any) -> Any:
    """A JSON view exact about types and set fields (what the two processes compare)."""
    t = type(v)
    if isinstance(v, pydantic.BaseModel):
        return {
            "type": f"{t.__module__}.{t.__qualname__}",
            "dump": v.model_dump(mode="json"),
            "set": sorted(v.model_fields_set),
        }
    if dataclasses.is_dataclass(v):
        return {"type": t.__qualname__, "fields": repr(v)}
    return {"type": f"{t.__module__}.{t.__qualname__}", "repr": repr(v)}


def main(db: str, out: str) -> None:
    cache = Cache(CacheConfig(path=db))
    fns = build(cache)
    results = {name: describe(fn(7)) for name, fn in fns.items()}
    errors = cache.namespace_stats("records")["errors"]
    cache.close()
    with open(out, "w") as f:
        json.dump({"runs": RUNS, "results": results, "errors": errors}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
