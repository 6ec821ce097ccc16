"""Which members can't define a result: clients, connections, locks, loggers... (``is_resource``).

A class is a resource by its package (``ollama``, ``httpx``, the standard library's handles, this
project's own); a class matched only by its name (``...Client``, ``...Pool``) from no known package is the
user's own, often a settings holder (``LLMClient(model, temperature)``): ``infra.cache.identity`` keys its
plain values instead of leaving it out. Weak references are not resources: they are walked through.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import weakref
from typing import Any

__all__ = ["PLAIN", "WEAK", "is_resource", "resource_kind"]

PLAIN = frozenset({str, bytes, int, float, bool, type(None)})
WEAK = (weakref.ReferenceType, weakref.ProxyType, weakref.CallableProxyType)

#: top-level packages whose objects are I/O handles, never settings
_RESOURCE_PACKAGES = frozenset(
    {
        "aiohttp",
        "anthropic",
        "asyncpg",
        "boto3",
        "botocore",
        "grpc",
        "httpcore",
        "httpx",
        "ollama",
        "openai",
        "psycopg",
        "psycopg2",
        "pymongo",
        "redis",
        "requests",
        "socket",
        "sqlalchemy",
        "sqlite3",
        "ssl",
        "threading",
        "urllib3",
        "websockets",
        "_thread",
        "_io",
        "io",
        "logging",
        "concurrent",
        "asyncio",
        "multiprocessing",
        "queue",
        "selectors",
        "subprocess",
        "weakref",
    }
)
#: this project's own handles (the cache, clients, metrics, pools) are resources too
_RESOURCE_MODULES = (
    "infra.cache",
    "infra.http",
    "infra.ollama",
    "infra.db",
    "infra.metrics",
    "infra.hotpath",
)
#: a class (or a base) named like this is a handle whatever package it comes from. Deliberately narrow:
#: a member wrongly taken for a handle is left out of the key (a wrong shared answer), one wrongly kept
#: only costs a miss, so words that also name data (Session, Event, Engine, Queue) are not here; the
#: standard library's and the known client packages' handles are caught by package above.
_RESOURCE_NAME = re.compile(r"(Client|Connection|Pool|Cursor|Lock|Logger|Socket|Thread|Executor|Transport)$")
#: per type: 1 a resource (by package), 2 named like one only (a user's ``LLMClient``: see ``_handle``), 0 not
_resource_memo: dict[type, int] = {}


def is_resource(value: Any) -> bool:
    """True for members that can't define a result: clients, connections, locks, loggers, threads..."""
    return resource_kind(type(value)) == 1


def resource_kind(t: type) -> int:
    """1: a resource (by package, or a module / generator / frame); 2: only named like one (see the module
    docstring); 0: neither. Memoised per type."""
    hit = _resource_memo.get(t)
    if hit is None:
        hit = _resource_memo[t] = _is_resource_type(t)
    return hit


def _is_resource_type(t: type) -> int:
    if t in PLAIN or t in (list, tuple, dict, set, frozenset) or issubclass(t, WEAK):
        return 0  # a weak reference is walked through to its referent
    # data types are settings whatever package defines them (``ollama.Options``, an httpx-free dataclass)
    if (
        dataclasses.is_dataclass(t)
        or issubclass(t, enum.Enum)
        or isinstance(getattr(t, "model_fields", None), dict)
    ):
        return 0
    if inspect.ismodule(t) or t.__name__ in ("module", "generator", "coroutine", "async_generator", "frame"):
        return 1
    mro = t.__mro__[:-1]  # object itself says nothing
    for klass in mro:
        module = klass.__module__ or ""
        if module.partition(".")[0] in _RESOURCE_PACKAGES or module.startswith(_RESOURCE_MODULES):
            return 1
    return 2 if any(_RESOURCE_NAME.search(klass.__name__) for klass in mro) else 0
