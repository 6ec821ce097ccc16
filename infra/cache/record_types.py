"""Typed records the safe codec stores: which types it knows, and which stored type names it may resolve.

Which stored type names a decode may turn into a class (issue 14, item 3). A store is written by other
processes, so a name read from it must never make this process import or run code it would not run anyway:

1. a type registered here (``register_type``, or encoded once by this process) resolves at once;
2. a type whose module is **already imported** resolves by attribute lookup on that module: no import, no
   module code runs, so a fresh worker that imported its own types reads what another process wrote;
3. a module under a **trusted prefix** may be imported: built in, ``pydantic``, ``ollama`` and
   ``langchain_core`` (libraries with side-effect-free modules whose types users cache:
   ``ollama.EmbedResponse``, ``AIMessage``), plus the user's ``cache.trusted_modules``;
4. a **signed** payload (HMAC over the bytes, ``FLAG_SIGNED``) may name any module: only a holder of the
   key wrote it.

Whatever resolves must be a dataclass, a pydantic model, an enum or a NamedTuple whose own name matches
the stored one; anything else is refused. Records are rebuilt without running user code: dataclasses and
NamedTuples from their stored fields (``object.__new__`` and field assignment, as pickle does; no
``__init__`` / ``__post_init__``), models by ``model_construct`` (no validators), enums by member name. An
unresolved type raises ``UnresolvedTypeError`` (a ``DecodeError``): the cache counts a miss and logs it.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from infra.cache.codec_errors import DecodeError
from infra.cache.keys import type_name

__all__ = ["TRUSTED_MODULES", "decoder_for", "encoder_for", "register_type", "resolve_type", "trusted"]

#: module prefixes a decode may import to rebuild a value (rule 3 above), besides ``cache.trusted_modules``
TRUSTED_MODULES = ("pydantic", "ollama", "langchain_core")

_registry_lock = threading.Lock()
_by_name: dict[str, tuple[type, Callable[[Any], Any], Callable[[Any], Any]]] = {}
_by_type: dict[type, tuple[str, Callable[[Any], Any]]] = {}
_T = TypeVar("_T")


def _dataclass_codec(cls: type) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]

    def enc(obj: Any) -> Any:
        return {n: getattr(obj, n) for n in names}

    def dec(data: Any) -> Any:
        # As pickle does: no __init__ / __post_init__ runs (the values were built by them the first time,
        # and a store another process writes must not make this one run code with chosen arguments).
        obj: Any = object.__new__(cls)
        for f in fields:
            if f.name in data:
                v = data[f.name]
            elif f.default is not dataclasses.MISSING:
                v = f.default
            elif f.default_factory is not dataclasses.MISSING:
                v = f.default_factory()
            else:
                raise DecodeError(f"cached {type_name(cls)} lacks its field {f.name!r}")
            object.__setattr__(obj, f.name, v)
        return obj

    return enc, dec


def _pydantic_codec(cls: type) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    names = list(cls.model_fields)  # type: ignore[attr-defined]

    def enc(obj: Any) -> Any:
        data = {n: getattr(obj, n) for n in names}
        extra = getattr(obj, "__pydantic_extra__", None)
        if extra:
            data.update(extra)
        fields_set = obj.model_fields_set
        if len(fields_set) == len(names) and not extra:
            return data
        # which fields were set matters to model_dump(exclude_unset=True) (the ollama client's streams)
        return {"$model": [data, sorted(fields_set)]}

    def dec(data: Any) -> Any:
        # model_construct: values were validated when first built; no validators rerun on a hit
        if type(data) is dict and len(data) == 1 and "$model" in data:
            values, fields_set = data["$model"]
            return cls.model_construct(_fields_set=set(fields_set), **values)  # type: ignore[attr-defined]
        return cls.model_construct(**data)  # type: ignore[attr-defined]

    return enc, dec


def _enum_codec(cls: type) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    def dec(name: Any) -> Any:
        try:
            return cls[name]  # type: ignore[index]
        except KeyError:
            raise DecodeError(f"{type_name(cls)} has no member {name!r}") from None

    return (lambda obj: obj.name), dec


def _namedtuple_codec(cls: type) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    def dec(values: Any) -> Any:
        return tuple.__new__(cls, values)  # (its __new__ is generated code; the fields are positional)

    return list, dec


#: a subclass of one of these (LangChain's ``TextAccessor`` is a str) is stored as its base value
_SCALAR_BASES: tuple[tuple[type, Callable[[Any], Any]], ...] = (
    (str, str.__str__),  # the base type's own slot: an exact str, whatever the subclass overrides
    (int, int.__int__),
    (float, float.__float__),
)


def _scalar_subclass_codec(cls: type, base: type, exact: Callable[[Any], Any]) -> tuple[Any, Any]:
    def dec(v: Any) -> Any:
        if type(v) is not base and not (base is float and type(v) is int):
            raise DecodeError(f"cached {type_name(cls)} holds a {type(v).__name__}, not a {base.__name__}")
        new: Any = base.__new__
        return new(cls, v)  # the base's __new__: no code of the subclass runs

    return exact, dec


def _record_codec(cls: type) -> tuple[Callable[[Any], Any], Callable[[Any], Any]] | None:
    """Encode / decode of a type the codec stores as a record, or None."""
    if not isinstance(cls, type):
        return None
    if dataclasses.is_dataclass(cls):
        return _dataclass_codec(cls)
    if isinstance(getattr(cls, "model_fields", None), dict) and hasattr(cls, "model_construct"):
        return _pydantic_codec(cls)
    if issubclass(cls, enum.Enum):
        return _enum_codec(cls)
    if issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple):
        return _namedtuple_codec(cls)
    for base, exact in _SCALAR_BASES:
        if issubclass(cls, base) and cls is not base and cls is not bool:
            return _scalar_subclass_codec(cls, base, exact)
    return None


def register_type(
    cls: type[_T],
    *,
    name: str | None = None,
    encode: Callable[[_T], object] | None = None,
    decode: Callable[[object], _T] | None = None,
) -> type[_T]:
    """Let the safe codec store instances of ``cls`` (dataclass, pydantic model, or with encode/decode).

    ``encode(obj)`` must return something the safe codec can store; ``decode(data)`` rebuilds the object.
    Usable as a class decorator. Returns ``cls``.
    """
    if encode is None or decode is None:
        codec = _record_codec(cls)
        if codec is None:
            raise TypeError(
                f"register_type({cls!r}) needs encode= and decode= (not a dataclass, pydantic model, enum "
                "or NamedTuple)"
            )
        encode, decode = codec
    tname = name or type_name(cls)
    with _registry_lock:
        _by_name[tname] = (cls, encode, decode)
        _by_type[cls] = (tname, encode)
    return cls


def _auto_register(cls: type) -> tuple[str, Callable[[Any], Any]] | None:
    if _record_codec(cls) is not None:
        register_type(cls)
        return _by_type[cls]
    return None


def resolve_type(tname: str, *, may_import: Callable[[str], bool]) -> bool:
    """Register the record type named ``tname`` if the rules in the module docstring allow; True if done.

    ``tname`` is ``module.QualName``; the split is unknown, so every split is tried, longest module first.
    Modules already imported are looked up without importing; others are imported only when
    ``may_import(module)``. The class found must be a record type whose own name is ``tname``.
    """
    parts = tname.split(".")
    splits = [(".".join(parts[:i]), parts[i:]) for i in range(len(parts) - 1, 0, -1)]
    for importing in (False, True):
        for mod_name, attrs in splits:
            mod = sys.modules.get(mod_name)
            if mod is None:
                if not importing or not may_import(mod_name):
                    continue
                try:
                    mod = importlib.import_module(mod_name)
                except Exception:  # not importable here: try the next split
                    continue
            obj: Any = mod
            for a in attrs:  # attribute lookups only (no import, no call)
                obj = getattr(obj, a, None)
                if obj is None:
                    break
            if isinstance(obj, type) and type_name(obj) == tname and _record_codec(obj) is not None:
                register_type(obj)
                return True
    return False


def trusted(module: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``module`` is one of ``prefixes`` or inside one (``ollama`` covers ``ollama._types``)."""
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def encoder_for(cls: type) -> tuple[str, Callable[[Any], Any]] | None:
    """``(stored name, encode)`` for instances of ``cls``: registered, or a record type registered now."""
    return _by_type.get(cls) or _auto_register(cls)


def decoder_for(tname: str) -> tuple[type, Callable[[Any], Any], Callable[[Any], Any]] | None:
    """``(class, encode, decode)`` of the registered type stored as ``tname``, or None (not resolved yet)."""
    return _by_name.get(tname)
