"""Resolving ``wrap`` entries: ``"package.module:Class"`` → the class; each listed method → how to wrap it.

Pure lookups, no patching: everything here runs before ``enable()`` changes anything, so a bad entry is a
``WrapError`` naming the entry (``wrap[1] (pkg.mod:Class): no method 'scroe' (did you mean 'score'?)``)
and nothing is half-applied.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from infra.errors import WrapError

__all__ = ["MethodPlan", "describe_entry", "import_target", "plan_methods"]

# How a listed attribute is stored on the class, and so how it must be re-wrapped.
KIND_FUNCTION = "function"  # plain ``def`` / ``async def`` (self is the first argument)
KIND_STATIC = "staticmethod"
KIND_CLASS = "classmethod"


@dataclass(frozen=True, slots=True)
class MethodPlan:
    """One method to cache: its name, the plain function underneath, and how it sits on the class."""

    name: str
    function: Any
    kind: str
    owner: type  # the class in whose __dict__ the attribute was found (the target or a base)


def describe_entry(index: int | None, target: str) -> str:
    """``wrap[1] (pkg.mod:Class)`` for a config entry, ``pkg.mod.Class`` for a class wrapped in code."""
    return f"wrap[{index}] ({target})" if index is not None else target


def import_target(target: str, *, where: str) -> type:
    """Import ``package.module:Class`` (``Outer.Inner`` for a nested class) and return the class."""
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise WrapError(f"{where}: target must look like 'package.module:Class', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        hint = _did_you_mean(missing.rpartition(".")[2], _sibling_modules(missing))
        if not hint and (missing == module_name.split(".")[0] or missing == module_name):
            hint = " (is the package on sys.path? run the worker from the project root)"
        raise WrapError(
            f"{where}: module {module_name!r} does not import: no module named {missing!r}{hint}"
        ) from exc
    except Exception as exc:  # the user's module raised while importing: say which entry pulled it in
        raise WrapError(
            f"{where}: importing module {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    walked = module_name
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise WrapError(f"{where}: {walked!r} has no attribute {part!r}{_did_you_mean(part, names)}")
        obj = getattr(obj, part)
        walked = f"{walked}.{part}" if walked != module_name else f"{module_name}:{part}"
    if not isinstance(obj, type):
        raise WrapError(f"{where}: {target!r} is a {type(obj).__name__}, not a class")
    return obj


def plan_methods(cls: type, methods: Sequence[str], *, where: str) -> list[MethodPlan]:
    """Check each listed method exists on ``cls`` and can be cached; return how to wrap each one."""
    if isinstance(methods, str):
        raise WrapError(f"{where}: methods must be a list of names, got the string {methods!r}")
    if not methods:
        raise WrapError(f"{where}: methods is empty: list the methods whose results should be cached")
    seen: set[str] = set()
    plans: list[MethodPlan] = []
    for name in methods:
        if not isinstance(name, str) or not name.isidentifier():
            raise WrapError(f"{where}: {name!r} is not a method name")
        if name in seen:
            raise WrapError(f"{where}: method {name!r} is listed twice")
        seen.add(name)
        plans.append(_plan_one(cls, name, where))
    return plans


def _plan_one(cls: type, name: str, where: str) -> MethodPlan:
    owner, raw = _lookup(cls, name)
    if raw is None:
        candidates = [n for n in dir(cls) if not n.startswith("__") and callable(getattr(cls, n, None))]
        raise WrapError(f"{where}: no method {name!r}{_did_you_mean(name, candidates)}")
    if name.startswith("__") and name.endswith("__"):
        raise WrapError(
            f"{where}: {name!r} is a special method; caching it would change how Python uses the class"
        )
    kind = KIND_FUNCTION
    fn = raw
    if isinstance(raw, staticmethod):
        kind, fn = KIND_STATIC, raw.__func__
    elif isinstance(raw, classmethod):
        kind, fn = KIND_CLASS, raw.__func__
    elif isinstance(raw, property):
        raise WrapError(f"{where}: {name!r} is a property, not a method; only methods can be cached")
    if not inspect.isfunction(fn) and not _is_our_wrapper(fn):
        raise WrapError(
            f"{where}: {name!r} is a {type(fn).__name__}, not a function defined in Python; only those "
            "can be cached"
        )
    inner = _unwrap_ours(fn)  # (a generator is cached as a recorded stream: infra.cache._streams)
    return MethodPlan(name=name, function=inner, kind=kind, owner=owner)


def _lookup(cls: type, name: str) -> tuple[type, Any]:
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass, klass.__dict__[name]
    return cls, None


def _is_our_wrapper(fn: Any) -> bool:
    return getattr(fn, "__infra_wrapped__", None) is not None


def _unwrap_ours(fn: Any) -> Any:
    """A method already cached by this layer (patched in place) is wrapped again from its original."""
    while _is_our_wrapper(fn):
        fn = fn.__infra_wrapped__
    return fn


def _sibling_modules(missing: str) -> list[str]:
    """Module names next to ``missing`` (in its parent package, or top-level), for a did-you-mean."""
    import pkgutil

    parent, _, _ = missing.rpartition(".")
    try:
        if parent:
            path = getattr(importlib.import_module(parent), "__path__", None)
            return [m.name for m in pkgutil.iter_modules(path)] if path is not None else []
        return [m.name for m in pkgutil.iter_modules()]
    except Exception:
        return []


def _did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
