"""One lazy-export helper for every package front door (PEP 562).

A package's ``__init__`` names each public name once, as a ``TYPE_CHECKING`` import in the
``from module import Name as Name`` form (mypy and IDEs read those; the ``as`` marks them re-exported
under ``--strict``). At run time the helper reads that block from the package's own source and builds
``__all__`` and the module-level ``__getattr__`` / ``__dir__`` that import a name's module on its first
access::

    from typing import TYPE_CHECKING

    from infra._lazy import lazy_exports

    if TYPE_CHECKING:
        from infra.cache.core import Cache as Cache
        from infra.cache.process import get_cache as get_cache
    else:
        __all__, __getattr__, __dir__ = lazy_exports(__name__)

The ``else`` keeps ``__getattr__`` out of the type checker's sight, so a misspelled name
(``infra.cache.Cahce``) is a mypy error rather than ``Any``. The block is read with plain string
methods, not ``ast``: importing ``ast`` would cost more than all of ``import infra`` (tests/test_package.py
checks, with ``ast``, that what each front door serves is exactly what its ``TYPE_CHECKING`` block names).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping

__all__ = ["lazy_exports", "type_checking_exports"]


def type_checking_exports(source: str) -> dict[str, str]:
    """``{name: module}`` for the ``from module import name as name`` lines of ``source``'s top-level
    ``if TYPE_CHECKING:`` block (one name per line, as ruff's isort writes them with ``as``)."""
    exports: dict[str, str] = {}
    inside = False
    for line in source.splitlines():
        if not inside:
            inside = line.startswith("if TYPE_CHECKING:")
            continue
        if line and not line[0].isspace():  # the block ends at the next top-level line (``else:``)
            break
        words = line.split()
        if len(words) == 6 and words[0] == "from" and words[2] == "import" and words[4] == "as":
            if words[3] != words[5]:
                raise ValueError(f"write 'import {words[3]} as {words[3]}', not {line.strip()!r}")
            exports[words[3]] = words[1]
    return exports


def lazy_exports(
    package: str, exports: Mapping[str, str] | None = None, *, eager: Iterable[str] = ()
) -> tuple[list[str], Callable[[str], object], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package``, whose public names load lazily.

    ``exports`` (public name -> defining module) defaults to the package's ``TYPE_CHECKING`` imports,
    read once from its ``__init__`` source. ``eager`` names public attributes the package defines itself
    (``__version__``); they join ``__all__``. A loaded name is stored on the package, so its next access
    skips ``__getattr__``.
    """
    module = sys.modules[package]
    if exports is None:
        with open(module.__file__ or "", encoding="utf-8") as f:
            exports = type_checking_exports(f.read())
    table = dict(exports)
    public = sorted({*table, *eager})

    def __getattr__(name: str) -> object:
        where = table.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where), name)
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(module), *table})

    return public, __getattr__, __dir__
