"""Deterministic JSON values that satisfy a JSON schema (no I/O): structured outputs and tool-call arguments.

Covers what ``format`` schemas and tool ``parameters`` use in practice (pydantic's ``model_json_schema()``
and ollama-python's ``convert_function_to_tool``): ``type`` (one or a list), ``properties`` / ``required``,
``items`` / ``minItems`` / ``maxItems``, ``enum`` / ``const``, ``anyOf`` / ``oneOf`` / ``allOf``, ``$ref``
into ``$defs`` / ``definitions``, ``minimum`` / ``maximum`` (also exclusive), ``minLength`` / ``maxLength``,
``format: date`` / ``date-time`` / ``email`` / ``uri``, and ``additionalProperties``. Every optional property
is filled in too, so a consumer reading any documented field finds one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["instance"]

_MAX_DEPTH = 8


def instance(schema: Any, draw: Callable[[], int], words: Sequence[str]) -> Any:
    """A value valid against ``schema``; ``draw()`` supplies deterministic 32-bit integers."""
    root = schema if isinstance(schema, Mapping) else {}
    return _value(root, root, draw, words, 0)


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    node: Any = root
    for part in ref.lstrip("#/").split("/"):
        if not part:
            continue
        node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, Mapping) else {}
    return node if isinstance(node, Mapping) else {}


def _value(
    s: Mapping[str, Any], root: Mapping[str, Any], draw: Callable[[], int], words: Sequence[str], depth: int
) -> Any:
    if "$ref" in s:
        target = {**_resolve(str(s["$ref"]), root), **{k: v for k, v in s.items() if k != "$ref"}}
        return _value(target, root, draw, words, depth + 1)
    if "const" in s:
        return s["const"]
    if s.get("enum"):
        options = list(s["enum"])
        return options[draw() % len(options)]
    if "allOf" in s:
        merged: dict[str, Any] = {}
        for part in s["allOf"]:
            part = _resolve(part["$ref"], root) if isinstance(part, Mapping) and "$ref" in part else part
            for k, v in dict(part).items():
                if k in ("properties",) and k in merged:
                    merged[k] = {**merged[k], **v}
                elif k == "required" and k in merged:
                    merged[k] = [*merged[k], *v]
                else:
                    merged[k] = v
        return _value(
            {**merged, **{k: v for k, v in s.items() if k != "allOf"}}, root, draw, words, depth + 1
        )
    for key in ("anyOf", "oneOf"):
        if s.get(key):
            choices = [c for c in s[key] if not (isinstance(c, Mapping) and c.get("type") == "null")]
            pick = (choices or s[key])[draw() % len(choices or s[key])]
            return _value(pick, root, draw, words, depth + 1)
    t = s.get("type")
    if isinstance(t, list):
        non_null = [x for x in t if x != "null"] or ["null"]
        t = non_null[draw() % len(non_null)]
    if t is None:
        t = "object" if "properties" in s else ("array" if "items" in s else "string")
    if depth > _MAX_DEPTH:
        return {"object": {}, "array": [], "string": "", "integer": 0, "number": 0, "boolean": False}.get(t)
    if t == "object":
        out: dict[str, Any] = {}
        for name, sub in (s.get("properties") or {}).items():
            out[name] = _value(sub if isinstance(sub, Mapping) else {}, root, draw, words, depth + 1)
        return out
    if t == "array":
        lo = int(s.get("minItems", 1))
        hi = int(s.get("maxItems", max(lo, 3)))
        n = lo + draw() % (hi - lo + 1)
        items: Mapping[str, Any] = s["items"] if isinstance(s.get("items"), Mapping) else {}
        return [_value(items, root, draw, words, depth + 1) for _ in range(n)]
    if t == "integer":
        lo_i = int(s.get("minimum", s.get("exclusiveMinimum", -1) + 1 if "exclusiveMinimum" in s else 0))
        hi_i = int(
            s.get(
                "maximum",
                s.get("exclusiveMaximum", lo_i + 101) - 1 if "exclusiveMaximum" in s else lo_i + 100,
            )
        )
        return lo_i + draw() % max(1, hi_i - lo_i + 1)
    if t == "number":
        lo_f = float(s.get("minimum", s.get("exclusiveMinimum", 0.0)))
        hi_f = float(s.get("maximum", s.get("exclusiveMaximum", lo_f + 100.0)))
        frac = (draw() % 10_000) / 10_000
        v = round(lo_f + (hi_f - lo_f) * frac, 2)
        if ("exclusiveMinimum" in s and v <= lo_f) or ("exclusiveMaximum" in s and v >= hi_f):
            v = (lo_f + hi_f) / 2
        return v
    if t == "boolean":
        return bool(draw() & 1)
    if t == "null":
        return None
    return _string(s, draw, words)


def _string(s: Mapping[str, Any], draw: Callable[[], int], words: Sequence[str]) -> str:
    fmt = s.get("format")
    if fmt == "date":
        return f"2026-{1 + draw() % 12:02d}-{1 + draw() % 28:02d}"
    if fmt == "date-time":
        return f"2026-{1 + draw() % 12:02d}-{1 + draw() % 28:02d}T{draw() % 24:02d}:{draw() % 60:02d}:00Z"
    if fmt == "email":
        return f"{words[draw() % len(words)]}@example.com"
    if fmt in ("uri", "url"):
        return f"https://example.com/{words[draw() % len(words)]}"
    lo = int(s.get("minLength", 1))
    hi = int(s.get("maxLength", 10_000))
    text = " ".join(words[draw() % len(words)] for _ in range(1 + draw() % 4))
    while len(text) < lo:
        text += " " + words[draw() % len(words)]
    return text[:hi]
