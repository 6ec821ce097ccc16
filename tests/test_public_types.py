"""No ``typing.Any`` in a public signature (issue 19).

What counts as public: every name in the ``__all__`` of a package front door (``FRONT_DOORS``). For a
function, its parameters and return; for a class, its constructor (``__init__``, or ``__new__`` where the
class defines no ``__init__``), ``__call__``, and every method and property whose name does not start with
``_``, including those inherited from classes of this package (not those of the standard library or a
dependency: ``Exception.with_traceback`` is not ours to type). An exported object that is neither a class
nor a function (a ``timed`` instance, say) is checked through its class.

What counts as ``Any``: ``typing.Any`` anywhere in a resolved annotation, nested too: ``Any``,
``dict[str, Any]``, ``Callable[..., Any]``, ``**kwargs: Any``. What does not: ``*args: object`` (it
accepts anything and lets the caller do nothing with it, which is the point); a decorator's
``Callable[P, R]`` with a ``ParamSpec`` and ``TypeVar`` (the wrapped function's own types flow through);
the bound of a ``TypeVar`` (``F = TypeVar("F", bound=Callable[..., Any])`` keeps the caller's exact type);
the values inside ``Literal[...]``. Fields of a dataclass or TypedDict that a signature names are not
descended into: the check is about what a call accepts and returns, not about data shapes.

Hints are resolved with ``typing.get_type_hints`` and the defining module's globals; a name imported only
under ``if TYPE_CHECKING:`` (``from infra.cache.core import Cache``, ``import asyncpg``) is resolved by
running that module's ``TYPE_CHECKING`` imports, and the front doors' exported names are in scope too. A
hint that still doesn't resolve fails the test with its name: a skip would hide exactly the annotation
that is wrong.

There is no allowlist: every public signature is typed without ``Any`` (the last 37 exceptions were typed
in issue 19). Where a value really is anything, ``object`` says so (label values, forwarded keywords).
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import infra

# Every package whose __init__ has an __all__ (a test checks none is missing), plus the public module
# infra.enrichment_helpers. Defining doors first, re-exporting ones (``infra.enrichment_helpers``,
# ``infra``) last: a name exported by several is reported under the first.
FRONT_DOORS = (
    "infra.cache",
    "infra.cache.backends",
    "infra.cache.backends.postgres",
    "infra.cache.backends.redis",
    "infra.cache.backends.sqlite",
    "infra.cli",
    "infra.config",
    "infra.db",
    "infra.demo",
    "infra.hotpath",
    "infra.http",
    "infra.inference",
    "infra.integrate",
    "infra.metrics",
    "infra.ollama",
    "infra.server",
    "infra.testing",
    "infra.enrichment_helpers",
    "infra",
)


def _type_checking_namespace(module: ModuleType) -> dict[str, object]:
    """The names ``module`` imports under ``if TYPE_CHECKING:``, imported for real."""
    return _type_checking_imports(module.__name__)


@functools.cache
def _type_checking_imports(module_name: str) -> dict[str, object]:
    module = sys.modules[module_name]
    source = inspect.getsource(module)
    namespace: dict[str, object] = {}
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.If) and _is_type_checking(node.test)):
            continue
        for statement in node.body:
            if isinstance(statement, ast.Import | ast.ImportFrom):
                code = compile(ast.Module(body=[statement], type_ignores=[]), module.__file__ or "?", "exec")
                exec(code, {"__name__": module_name, "__package__": module.__package__}, namespace)
    return namespace


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


@functools.cache
def _exported_names() -> dict[str, object]:
    names: dict[str, object] = {}
    for door in reversed(FRONT_DOORS):
        module = importlib.import_module(door)
        for name in module.__all__:
            names[name] = getattr(module, name)
    return names


def _hints(function: Callable[..., object], qualname: str) -> dict[str, object]:
    """``function``'s resolved annotations; fails (never skips) naming a hint that won't resolve."""
    target = inspect.unwrap(function)
    module = sys.modules.get(getattr(target, "__module__", "") or "")
    globalns: dict[str, object] = dict(getattr(target, "__globals__", {}))
    globalns.update(vars(module) if module is not None else {})
    globalns.pop("__builtins__", None)  # a namedtuple's __new__ has an empty one; eval supplies the real
    try:
        return typing.get_type_hints(target, globalns=globalns)
    except NameError:
        pass
    local: dict[str, object] = dict(_exported_names())
    if module is not None:
        local.update(_type_checking_namespace(module))
    try:
        return typing.get_type_hints(target, globalns=globalns, localns=local)
    except NameError as exc:
        pytest.fail(f"{qualname}: annotation {exc.name!r} does not resolve ({exc})")


def _has_any(hint: object) -> bool:
    if hint is Any:
        return True
    if isinstance(hint, list):  # a Callable's parameter list: ``get_args(Callable[[A], R]) == ([A], R)``
        return any(_has_any(arg) for arg in hint)
    if isinstance(hint, typing.TypeVar | typing.ParamSpec) or typing.get_origin(hint) is typing.Literal:
        return False
    return any(_has_any(arg) for arg in typing.get_args(hint) if arg is not Ellipsis)


def _ours(cls: type) -> bool:
    return cls.__module__ == "infra" or cls.__module__.startswith("infra.")


def _members(cls: type) -> Iterator[tuple[str, Callable[..., object]]]:
    """The public callables of ``cls`` (see the module docstring), each once, nearest definition first."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not _ours(klass):
            continue
        for name, raw in vars(klass).items():
            if name in seen:
                continue
            public = not name.startswith("_") or name in ("__init__", "__call__")
            if name == "__new__" and "__init__" not in {n for k in cls.__mro__ if _ours(k) for n in vars(k)}:
                public = True
            if not public:
                continue
            seen.add(name)
            if isinstance(raw, property):
                if raw.fget is not None:
                    yield name, raw.fget
            elif isinstance(raw, staticmethod | classmethod):
                yield name, raw.__func__
            elif inspect.isfunction(raw):
                yield name, raw


def _signatures() -> dict[str, Callable[..., object]]:
    """Every public signature, by qualified name, each object once."""
    found: dict[str, Callable[..., object]] = {}
    visited: set[int] = set()
    for door in FRONT_DOORS:
        module = importlib.import_module(door)
        for name in module.__all__:
            obj = getattr(module, name)
            if id(obj) in visited:
                continue
            visited.add(id(obj))
            qualname = f"{door}.{name}"
            if inspect.isclass(obj):
                for member, function in _members(obj):
                    found[f"{qualname}.{member}"] = function
            elif inspect.isfunction(obj) or inspect.ismethod(obj):
                found[qualname] = obj
                for overload in getattr(typing, "get_overloads", lambda f: [])(obj):
                    found[f"{qualname}[overload {overload.__code__.co_firstlineno}]"] = overload
            elif callable(obj) and _ours(type(obj)):
                for member, function in _members(type(obj)):
                    found[f"{qualname}.{member}"] = function
    return found


@functools.cache
def _with_any() -> dict[str, list[str]]:
    """qualified name -> the parameters (``return`` for the result) whose annotation holds ``Any``."""
    offenders: dict[str, list[str]] = {}
    for qualname, function in _signatures().items():
        where = [param for param, hint in _hints(function, qualname).items() if _has_any(hint)]
        if where:
            offenders[qualname] = where
    return offenders


def test_the_check_sees_nested_any() -> None:
    """The detector itself: nested Any counts, object / ParamSpec / TypeVar / Literal do not."""
    P = typing.ParamSpec("P")
    R = typing.TypeVar("R", bound=Callable[..., Any])
    assert _has_any(Any)
    assert _has_any(dict[str, Any])
    assert _has_any(Callable[..., Any])
    assert _has_any(list[Any] | None)
    assert _has_any(Callable[[int], typing.Awaitable[Any]])
    assert _has_any(Callable[[Any], None])
    assert _has_any(Callable[[int, dict[str, Any]], None])
    assert not _has_any(object)
    assert not _has_any(Callable[P, R])
    assert not _has_any(dict[str, object] | None)
    assert not _has_any(typing.Literal["Any"])


def test_no_any_in_public_signatures() -> None:
    offenders = _with_any()
    lines = [f"  {name}: {', '.join(where)}" for name, where in sorted(offenders.items())]
    assert not offenders, "Any in a public signature (parameters; 'return' = the result):\n" + "\n".join(
        lines
    )


def test_the_scan_covers_every_front_door() -> None:
    """Every package with an ``__all__`` is scanned, and each door yields signatures (else it would pass
    vacuously)."""
    root = Path(infra.__file__).parent
    doors = {
        ".".join(("infra", *init.parent.relative_to(root).parts))
        for init in root.rglob("__init__.py")
        if "__all__" in init.read_text(encoding="utf-8")
    }
    assert doors <= set(FRONT_DOORS), sorted(doors - set(FRONT_DOORS))
    names = _signatures()
    for door in FRONT_DOORS[:-2]:  # the last two only re-export names reported under their own door
        assert any(name.startswith(door + ".") for name in names), door
