"""Small I/O-free helpers of the Ollama layer: detached reply copies, official signatures, keep_alive
durations, the embedding-model name heuristic."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "PRIMITIVE",
    "WARM_OPTIONS",
    "detached",
    "detacher",
    "is_embedding_model",
    "keep_alive_seconds",
    "official_signature",
    "warm_messages",
]

_F = TypeVar("_F", bound=Callable[..., Any])
PRIMITIVE = frozenset({str, int, float, bool, type(None)})
_PRIMITIVE = PRIMITIVE


def detached(obj: Any) -> Any:
    """A copy sharing nothing mutable with ``obj``: pydantic models and lists are copied all the way down
    (a caller mutating its reply must not change the next caller's); str/int/float are immutable."""
    cls = type(obj)
    if cls is list:
        return [detached(v) for v in obj] if obj and type(obj[0]) not in _PRIMITIVE else obj.copy()
    if cls is dict:
        return {k: detached(v) for k, v in obj.items()}
    d = getattr(obj, "__dict__", None)
    if d is None or not hasattr(obj, "__pydantic_fields_set__"):
        return obj
    # what pydantic's model_copy does, minus its generic machinery (a third of a hit's time)
    nd = d.copy()
    for k, v in d.items():
        if type(v) not in _PRIMITIVE:
            nd[k] = detached(v)
    new = object.__new__(cls)
    _set(new, "__dict__", nd)
    _set(new, "__pydantic_fields_set__", set(obj.__pydantic_fields_set__))
    _set(new, "__pydantic_extra__", None if obj.__pydantic_extra__ is None else dict(obj.__pydantic_extra__))
    _set(
        new,
        "__pydantic_private__",
        None if obj.__pydantic_private__ is None else dict(obj.__pydantic_private__),
    )
    return new


_set = object.__setattr__


def detacher(model: Any) -> Callable[[], Any]:
    """A function returning ``detached(model)`` quickly: the fields that need copying (the mutable ones)
    are found once, so each call copies only those (a cached reply is handed out on every hit)."""
    cls = type(model)
    d = model.__dict__
    mutable = tuple(k for k, v in d.items() if type(v) not in _PRIMITIVE)
    fields_set = model.__pydantic_fields_set__
    extra, private = model.__pydantic_extra__, model.__pydantic_private__
    if extra is not None or private is not None:
        return lambda: detached(model)

    def copy() -> Any:
        nd = d.copy()
        for k in mutable:
            nd[k] = detached(d[k])
        new = object.__new__(cls)
        _set(new, "__dict__", nd)
        _set(new, "__pydantic_fields_set__", set(fields_set))
        _set(new, "__pydantic_extra__", None)
        _set(new, "__pydantic_private__", None)
        return new

    return copy


def official_signature(official: Any, *extra: str) -> Callable[[_F], _F]:
    """Give a method the official one's signature (and docstring) plus the layer's keyword-only ``extra``
    keywords, so ``inspect.signature`` (frameworks, ollama-python's own annotation tests) sees the official
    parameters, annotations included, rather than ``*args, **kwargs``."""

    def apply(fn: _F) -> _F:
        sig = inspect.signature(official)
        added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in extra]
        fn.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *added])  # type: ignore[attr-defined]
        fn.__doc__ = (fn.__doc__ or "") + "\n\n" + inspect.cleandoc(official.__doc__ or "")
        return fn

    return apply


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive_seconds(value: Any, default: float = 300.0) -> float:
    """Seconds for an Ollama keep_alive (a number of seconds or "30m", "1h30m"); negative: forever (inf)."""
    import math
    import re

    if value is None or value == "":
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        s = float(value)
    else:
        text = str(value).strip()
        try:
            s = float(text)
        except ValueError:
            parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text.lstrip("+-"))
            if not parts:
                raise ValueError(f"invalid keep_alive {value!r}") from None
            s = sum(float(n) * _UNITS[u] for n, u in parts) * (-1 if text.startswith("-") else 1)
    return math.inf if s < 0 else s


#: A warmup chat's options: one token is enough to load the model and fill the prompt's KV cache.
WARM_OPTIONS = {"num_predict": 1}


def warm_messages(model: str, system_prompt: str | None) -> list[dict[str, str]] | None:
    """The messages of a warmup chat for ``model`` (the system prompt first, so its KV cache is warm too);
    None for an embedding model, warmed through /api/embed instead."""
    if is_embedding_model(model):
        return None
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    msgs.append({"role": "user", "content": "ok"})
    return msgs


def is_embedding_model(model: str) -> bool:
    """Name heuristic for warmup: embedding models can't /api/chat (Ollama answers 400 "does not support")."""
    base = model.split(":", 1)[0].lower()
    return any(t in base for t in ("embed", "minilm", "bge", "e5-", "gte-", "mxbai", "arctic-embed"))
