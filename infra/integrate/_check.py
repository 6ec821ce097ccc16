"""Checking perf_config's ``wrap`` list: every problem of every entry, by JSON path.

One check serves three readers: ``enable()`` (layer on: ``WrapError`` before anything changes; layer off:
one logged warning per problem, never a crash), ``python -m infra config check`` and ``doctor``
(``wrap[0].methods[0]: pkg.mod:Scorer has no method 'scor' (did you mean 'score'?)``).

Checking a target imports its module, as the worker would; the CLI runs it with the working directory
and the project folder (the config folder's parent) on ``sys.path``, see ``check_wrap``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.errors import ConfigProblem, WrapError
from infra.integrate._targets import MethodPlan, import_target, plan_methods

__all__ = ["ResolvedEntry", "check_wrap", "resolve_wrap"]


@dataclass
class ResolvedEntry:
    """One ``wrap`` entry: its class (None when it doesn't import) and the methods that can be cached."""

    index: int
    entry: Any
    cls: type | None = None
    plans: list[MethodPlan] = field(default_factory=list)


def _message(exc: WrapError, where: str) -> str:
    text = str(exc)
    return text[len(where) + 2 :] if text.startswith(f"{where}: ") else text


def resolve_wrap(config: Any) -> tuple[list[ResolvedEntry], list[ConfigProblem]]:
    """Import every entry's class and plan its methods; problems are collected, never raised."""
    problems: list[ConfigProblem] = []
    resolved: list[ResolvedEntry] = []
    owner_of: dict[tuple[str, str], int] = {}
    for i, entry in enumerate(config.wrap):
        r = ResolvedEntry(i, entry)
        resolved.append(r)
        path = f"wrap[{i}]"
        if entry.ttl is not None and entry.ttl <= 0:
            problems.append(
                ConfigProblem(
                    f"{path}.ttl",
                    f'must be a positive duration (seconds or a string like "30m"), got {entry.ttl:g}; '
                    "leave it out (null) for the namespace's TTL",
                )
            )
        for j, name in enumerate(entry.key_attrs or ()):
            if not all(part.isidentifier() for part in name.split(".")):
                problems.append(ConfigProblem(f"{path}.key_attrs[{j}]", f"{name!r} is not an attribute name"))
        try:
            r.cls = import_target(entry.target, where=f"{path}.target")
        except WrapError as exc:
            problems.append(ConfigProblem(f"{path}.target", _message(exc, f"{path}.target")))
            continue
        if not entry.methods:
            problems.append(
                ConfigProblem(f"{path}.methods", "is empty: list the methods whose results should be cached")
            )
        seen: set[str] = set()
        for j, name in enumerate(entry.methods):
            where = f"{path}.methods[{j}]"
            if name in seen:
                problems.append(ConfigProblem(where, f"method {name!r} is listed twice"))
                continue
            seen.add(name)
            try:
                (plan,) = plan_methods(r.cls, [name], where=where)
            except WrapError as exc:
                problems.append(ConfigProblem(where, f"{entry.target}: {_message(exc, where)}"))
                continue
            first = owner_of.setdefault((entry.target, name), i)
            if first != i:
                problems.append(
                    ConfigProblem(
                        where, f"method {name!r} is already cached by wrap[{first}]; list each method once"
                    )
                )
                continue
            r.plans.append(plan)
    return resolved, problems


@contextlib.contextmanager
def _project_on_path(config: Any) -> Iterator[None]:
    """The working directory and the project folder (the parent of ``config/``) importable, for the CLI:
    ``python -m infra config check`` run from the project root or the worker's folder sees what it sees."""
    extra = [str(Path.cwd())]
    source = getattr(config, "source", None)
    if source and source != "built-in defaults":
        extra.append(str(Path(source).resolve().parent.parent))
    added = [p for p in extra if p not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for p in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(p)


def check_wrap(config: Any) -> list[ConfigProblem]:
    """Every problem of the ``wrap`` list by JSON path (unknown modules, classes and methods with a
    did-you-mean, bad ttl values), for ``config check`` and ``doctor``."""
    with _project_on_path(config):
        return resolve_wrap(config)[1]
