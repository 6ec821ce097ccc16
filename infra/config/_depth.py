"""How deep a config may nest, checked without recursion (issue 17 item 15).

``json.loads`` and the recursive builders in ``_build`` / ``_model`` raise ``RecursionError`` on input nested
a few hundred levels deep (``{"enabled": [[[...5000]]]}``). The real schema nests at most five levels (a
``wrap`` entry's options), so anything deeper than ``MAX_DEPTH`` is a mistake: it is reported as a
``ConfigProblem`` at the JSON path where the limit was crossed, before anything recursive sees it. Both
checks are loops with an explicit stack, so they can't run out of Python frames themselves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from infra.errors import ConfigProblem

__all__ = ["MAX_DEPTH", "depth_problem_in_data", "depth_problem_in_text"]

#: deepest nesting (objects and lists) a config may have: 10x what the schema uses, far below Python's
#: recursion limit (1000 frames; the builders use two or three frames per level)
MAX_DEPTH = 64


def _message() -> str:
    return f"nested more than {MAX_DEPTH} levels deep (no setting is); the file is not read further"


def _path(stack: list[list[Any]]) -> str:
    out = ""
    for frame in stack:
        label = frame[1]
        if label is None:
            continue
        if isinstance(label, int):
            out += f"[{label}]"
        else:
            out += f".{label}" if out else label
    return out


def depth_problem_in_text(text: str) -> ConfigProblem | None:
    """Scan JSON text (syntax errors are left to ``json``): a problem naming the JSON path of the first
    value nested deeper than ``MAX_DEPTH``, or None."""
    # each frame: [kind "{" or "[", label of the value being read (key / index / None), expecting a key]
    stack: list[list[Any]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if stack and stack[-1][0] == "{" and stack[-1][2]:
                raw = text[i + 1 : j]
                try:
                    key = json.loads(text[i : j + 1])
                except ValueError:
                    key = raw
                stack[-1][1] = key
                stack[-1][2] = False
            i = j + 1
            continue
        if c in "{[":
            if len(stack) >= MAX_DEPTH:
                return ConfigProblem(_path(stack) or "(top level)", _message())
            stack.append([c, 0 if c == "[" else None, c == "{"])
        elif c in "}]":
            if stack:
                stack.pop()
        elif c == "," and stack:
            top = stack[-1]
            if top[0] == "[":
                top[1] += 1
            else:
                top[2] = True
        i += 1
    return None


def depth_problem_in_data(data: Any) -> ConfigProblem | None:
    """The same check on parsed data (``build_config`` is also called with dicts built in Python)."""
    todo: list[tuple[Any, str, int]] = [(data, "", 0)]
    while todo:
        value, path, depth = todo.pop()
        if isinstance(value, Mapping):
            items: Any = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
        else:
            continue
        if depth >= MAX_DEPTH:
            return ConfigProblem(path or "(top level)", _message())
        todo.extend((v, p, depth + 1) for p, v in items)
    return None
