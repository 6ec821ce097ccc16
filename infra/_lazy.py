"""One lazy-export helper for every package front door (PEP 562).

A package's ``__init__`` holds a table, public name -> module that defines it, and the same names as
``TYPE_CHECKING`` imports in the ``from module import Name as Name`` form (mypy and IDEs read those; the
``as`` marks them re-exported under ``--strict``). At run time the helper builds ``__all__`` from the table
and the module-level ``__getattr__`` / ``__dir__`` that import a name's module on its first access::

    from typing import TYPE_CHECKING

    from infra._lazy import lazy_exports

    _EXPORTS = {"Cache": "infra.cache.core", "get_cache": "infra.cache.process"}

    if TYPE_CHECKING:
        from infra.cache.core import Cache as Cache
        from infra.cache.process import get_cache as get_cache
    else:
        __all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

The ``else`` keeps ``__getattr__`` out of the type checker's sight, so a misspelled name
(``infra.cache.Cahce``) is a mypy error rather than ``Any``. tests/test_package.py checks that every front
door's ``TYPE_CHECKING`` imports and its table name the same objects.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], *, eager: Iterable[str] = ()
) -> tuple[list[str], Callable[[str], object], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package``, whose public names load lazily per ``exports``.

    ``eager`` names public attributes the package defines itself (``__version__``); they join
    ``__all__``. A loaded name is stored on the package, so its next access skips ``__getattr__``.
    """
    module = sys.modules[package]
    public = sorted({*exports, *eager})

    def __getattr__(name: str) -> object:
        where = exports.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where), name)
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(module), *exports})

    return public, __getattr__, __dir__
