"""Checking perf_config's ``wrap`` list: every problem of every entry, by JSON path.

One check serves three readers: ``enable()`` (layer on: ``WrapError`` before anything changes; layer off:
one logged warning per problem, never a crash), ``python -m infra config check`` and ``doctor``
(``wrap[0].methods[0]: pkg.mod:Scorer has no method 'scor' (did you mean 'score'?)``).

Checking a target imports its module, as the worker would; the CLI runs it with the working directory
and the project root on ``sys.path`` (and the worker's folder under it, see ``_import_roots``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.errors import ConfigProblem, WrapError
from infra.integrate._targets import MethodPlan, import_class_or_function, plan_methods

__all__ = ["ResolvedEntry", "check_wrap", "resolve_wrap"]


@dataclass
class ResolvedEntry:
    """One ``wrap`` entry: its class (None when it doesn't import) and the methods that can be cached."""

    index: int
    entry: Any
    cls: type | None = None
    plans: list[MethodPlan] = field(default_factory=list)
    function: Any = None  # a module-level function target (cached as a whole; no methods)


def _message(exc: WrapError, where: str) -> str:
    text = str(exc)
    return text[len(where) + 2 :] if text.startswith(f"{where}: ") else text


def resolve_wrap(
    config: Any, entries: Iterable[tuple[int, Any]] | None = None
) -> tuple[list[ResolvedEntry], list[ConfigProblem]]:
    """Import every entry's class and plan its methods; problems are collected, never raised.

    ``entries``: (index, entry) pairs to check instead of ``config.wrap`` (``config check`` passes the
    entries that built while other fields have problems, so every problem shows at once)."""
    problems: list[ConfigProblem] = []
    resolved: list[ResolvedEntry] = []
    owner_of: dict[tuple[str, str], int] = {}
    functions_seen: set[str] = set()
    for i, entry in enumerate(config.wrap) if entries is None else entries:
        r = ResolvedEntry(i, entry)
        resolved.append(r)
        path = f"wrap[{i}]"
        # (a negative ttl is the config parser's to report; 0 never expires, as wherever a TTL is read)
        for j, name in enumerate(entry.key_attrs or ()):
            if not all(part.isidentifier() for part in name.split(".")):
                problems.append(ConfigProblem(f"{path}.key_attrs[{j}]", f"{name!r} is not an attribute name"))
        try:
            obj = import_class_or_function(entry.target, where=f"{path}.target")
        except WrapError as exc:
            problems.append(ConfigProblem(f"{path}.target", _message(exc, f"{path}.target")))
            continue
        if not isinstance(obj, type):
            if entry.methods:
                problems.append(
                    ConfigProblem(
                        f"{path}.methods",
                        f"{entry.target} is a function: it is cached as a whole, leave 'methods' out",
                    )
                )
            elif entry.target in functions_seen:
                problems.append(ConfigProblem(f"{path}.target", f"function {entry.target} is listed twice"))
            else:
                functions_seen.add(entry.target)
                r.function = obj
            continue
        r.cls = obj
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


def _provides(folder: Path, top: str) -> bool:
    return (folder / top).is_dir() or (folder / f"{top}.py").is_file()


def _import_roots(config: Any, entries: Iterable[tuple[int, Any]]) -> list[str]:
    """Folders to import wrap targets from, as the worker would see them.

    The working directory and the project root (``infra.config.project_root``: the folder holding
    ``config/``). A worker started as ``python enrichment-worker/worker.py`` also has its own folder on
    ``sys.path``, which a check run from the project root can't know: when a target's top-level package
    is on neither, the one folder directly under the project root that holds it is added (seed 004's
    ``Leo/enrichment-worker/src``); two such folders are ambiguous and the import problem stays."""
    roots = [Path.cwd()]
    source = getattr(config, "source", None)
    if source and source != "built-in defaults":
        from infra.config import project_root

        roots.append(project_root(source))
    extra = [str(p) for p in roots]
    tops = {entry.target.partition(":")[0].split(".")[0] for _, entry in entries if entry.target}
    for top in sorted(tops):
        if not top.isidentifier() or any(_provides(r, top) for r in roots):
            continue
        if importlib.util.find_spec(top) is not None:
            continue  # installed, or already importable
        if len(roots) < 2 or not roots[1].is_dir():
            continue
        holders = [
            sub
            for sub in sorted(roots[1].iterdir())
            if sub.is_dir() and not sub.name.startswith(".") and _provides(sub, top)
        ]
        if len(holders) == 1:
            extra.append(str(holders[0]))
    return extra


@contextlib.contextmanager
def _project_on_path(config: Any, entries: Iterable[tuple[int, Any]]) -> Iterator[None]:
    """The folders of ``_import_roots`` importable, for the CLI: ``python -m infra config check`` run
    from the project root or the worker's folder sees what the worker sees."""
    added = [p for p in dict.fromkeys(_import_roots(config, entries)) if p not in sys.path]
    sys.path[:0] = added
    importlib.invalidate_caches()
    try:
        yield
    finally:
        for p in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(p)


def check_wrap(config: Any, entries: Iterable[tuple[int, Any]] | None = None) -> list[ConfigProblem]:
    """Every problem of the ``wrap`` list by JSON path (unknown modules, classes and methods with a
    did-you-mean, bad ttl values), for ``config check`` and ``doctor``."""
    pairs = list(enumerate(config.wrap) if entries is None else entries)
    with _project_on_path(config, pairs):
        return resolve_wrap(config, pairs)[1]
