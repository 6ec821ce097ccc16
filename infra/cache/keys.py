"""Content-addressed keys: SHA-256 over a canonical, typed encoding of what determines a result.

The encoding (``KEY_SCHEMA`` 1) is a byte string built from one-letter type tags and length prefixes, so

* ``str``, ``bytes``, ``int``, ``float``, ``bool`` and ``None`` are told apart (``1``, ``1.0``, ``True``,
  ``"1"`` and ``b"1"`` give four keys), ``tuple`` and ``list`` are told apart;
* dict keys and set members are sorted by their own encoding, so insertion order never matters;
* floats are encoded exactly (IEEE-754 big-endian bytes: ``0.1`` and ``0.1000000000000001`` differ,
  ``0.0`` and ``-0.0`` differ); every NaN is one canonical NaN;
* numpy arrays / scalars and torch tensors go in by dtype, shape and raw bytes; dataclasses, pydantic models
  and named tuples by their qualified type name and fields; enums by type and value; datetime, date, time,
  timedelta, Decimal, UUID, complex and paths by exact value; objects may define ``__cache_key__()``.

Nothing depends on ``hash()``, ``repr()`` of arbitrary objects, dict order or the Python version, so a key is
the same in every process, run and interpreter (tests/cache/test_keys.py pins golden keys). Anything else
raises ``UncacheableError``: the caller runs uncached (``@cached`` counts it and warns once per function).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import hashlib
import math
import pathlib
import struct
import uuid
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any, TypedDict

__all__ = [
    "KEY_SCHEMA",
    "KeyExplanation",
    "UncacheableError",
    "canonical_bytes",
    "explain_key",
    "function_header",
    "function_key",
    "function_key_from_header",
    "make_key",
    "type_name",
]

KEY_SCHEMA = 1
_MAX_DEPTH = 64
_HEADER = b"perf-infra/key\x00"
_pack_d = struct.Struct(">d").pack
_first = itemgetter(0)
_NAN = b"f" + _pack_d(math.nan)


class UncacheableError(TypeError):
    """An argument has no canonical encoding, so no trustworthy key exists for the call."""


def type_name(t: type) -> str:
    """``module.QualName``: stable across processes, unlike ``id`` or ``repr``."""
    return f"{t.__module__}.{t.__qualname__}"


def _len(n: int) -> bytes:
    return b"%d:" % n


def _enc_str(obj: str, out: bytearray, depth: int) -> None:
    data = obj.encode("utf-8", "surrogatepass")
    out += b"s%d:" % len(data)
    out += data


def _enc_bytes(obj: bytes, out: bytearray, depth: int) -> None:
    out += b"b%d:" % len(obj)
    out += obj


def _enc_bytearray(obj: bytearray, out: bytearray, depth: int) -> None:
    out += b"B%d:" % len(obj)
    out += obj


def _enc_int(obj: int, out: bytearray, depth: int) -> None:
    # hex: exact for any size (str(int) is capped by sys.set_int_max_str_digits)
    out += b"i%x;" % obj


def _enc_bool(obj: bool, out: bytearray, depth: int) -> None:
    out += b"T" if obj else b"F"


def _enc_none(obj: None, out: bytearray, depth: int) -> None:
    out += b"N"


def _enc_float(obj: float, out: bytearray, depth: int) -> None:
    if obj != obj:  # NaN: one canonical encoding whatever the payload bits
        out += _NAN
    else:
        out += b"f"
        out += _pack_d(obj)


def _enc_complex(obj: complex, out: bytearray, depth: int) -> None:
    out += b"c"
    _enc_float(obj.real, out, depth)
    _enc_float(obj.imag, out, depth)


def _enc_seq(tag: bytes) -> Callable[[Any, bytearray, int], None]:
    def enc(obj: Any, out: bytearray, depth: int) -> None:
        out += tag + _len(len(obj))
        for item in obj:
            _enc(item, out, depth + 1)

    return enc


def _sorted_members(items: Any, depth: int) -> list[bytes]:
    parts = []
    for item in items:
        b = bytearray()
        _enc(item, b, depth + 1)
        parts.append(bytes(b))
    parts.sort()
    return parts


def _enc_set(tag: bytes) -> Callable[[Any, bytearray, int], None]:
    def enc(obj: Any, out: bytearray, depth: int) -> None:
        out += tag + _len(len(obj))
        for p in _sorted_members(obj, depth):
            out += p

    return enc


def _enc_dict(obj: Mapping[Any, Any], out: bytearray, depth: int) -> None:
    pairs = []
    for k, v in obj.items():
        if type(k) is str:  # the common case, spelled out: same bytes as _enc_str
            data = k.encode("utf-8", "surrogatepass")
            pairs.append((b"s%d:%s" % (len(data), data), v))
            continue
        kb = bytearray()
        _enc(k, kb, depth + 1)
        pairs.append((bytes(kb), v))
    pairs.sort(key=_first)
    out += b"{" + _len(len(pairs))
    for kb_bytes, v in pairs:
        out += kb_bytes
        # str and int values inline (same bytes as _enc_str / _enc_int): most arguments are these
        t = type(v)
        if t is str:
            data = v.encode("utf-8", "surrogatepass")
            out += b"s%d:" % len(data)
            out += data
        elif t is int:
            out += b"i%x;" % v
        else:
            _enc(v, out, depth + 1)


def _enc_name(t: type, out: bytearray) -> None:
    _enc_str(type_name(t), out, 0)


def _enc_datetime(obj: _dt.datetime, out: bytearray, depth: int) -> None:
    out += b"D"
    _enc_str(obj.isoformat(), out, depth)
    out += b"1" if obj.fold else b"0"


def _enc_date(obj: _dt.date, out: bytearray, depth: int) -> None:
    out += b"d"
    _enc_str(obj.isoformat(), out, depth)


def _enc_time(obj: _dt.time, out: bytearray, depth: int) -> None:
    out += b"t"
    _enc_str(obj.isoformat(), out, depth)


def _enc_timedelta(obj: _dt.timedelta, out: bytearray, depth: int) -> None:
    out += b"z%x;%x;%x;" % (obj.days, obj.seconds, obj.microseconds)


def _enc_decimal(obj: decimal.Decimal, out: bytearray, depth: int) -> None:
    out += b"m"
    _enc_str(str(obj), out, depth)


def _enc_uuid(obj: uuid.UUID, out: bytearray, depth: int) -> None:
    out += b"u" + obj.bytes


_DISPATCH: dict[type, Callable[[Any, bytearray, int], None]] = {
    str: _enc_str,
    bytes: _enc_bytes,
    bytearray: _enc_bytearray,
    int: _enc_int,
    bool: _enc_bool,
    type(None): _enc_none,
    float: _enc_float,
    complex: _enc_complex,
    tuple: _enc_seq(b"("),
    list: _enc_seq(b"["),
    dict: _enc_dict,
    set: _enc_set(b"<"),
    frozenset: _enc_set(b">"),
    _dt.datetime: _enc_datetime,
    _dt.date: _enc_date,
    _dt.time: _enc_time,
    _dt.timedelta: _enc_timedelta,
    decimal.Decimal: _enc_decimal,
    uuid.UUID: _enc_uuid,
}


def _enc_numpy(obj: Any, out: bytearray, depth: int) -> bool:
    import numpy as np

    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise UncacheableError("numpy array of dtype object has no canonical encoding")
        arr = np.ascontiguousarray(obj)
        out += b"A"
        _enc_str(arr.dtype.str, out, depth)
        _enc_seq(b"(")(tuple(int(n) for n in arr.shape), out, depth)
        _enc_bytes(arr.tobytes(), out, depth)
        return True
    if isinstance(obj, np.generic):
        if obj.dtype.hasobject:
            raise UncacheableError("numpy object scalar has no canonical encoding")
        out += b"a"
        _enc_str(obj.dtype.str, out, depth)
        _enc_bytes(obj.tobytes(), out, depth)
        return True
    return False


def _enc_torch(obj: Any, out: bytearray, depth: int) -> bool:
    import torch

    if not isinstance(obj, torch.Tensor):
        return False
    t = obj.detach().cpu().contiguous()
    raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    out += b"Q"
    _enc_str(str(t.dtype), out, depth)
    _enc_seq(b"(")(tuple(int(n) for n in t.shape), out, depth)
    _enc_bytes(raw, out, depth)
    return True


def _enc_fields(tag: bytes, t: type, names: Any, obj: Any, out: bytearray, depth: int) -> None:
    names = list(names)
    out += tag
    _enc_name(t, out)
    out += _len(len(names))
    for name in names:
        _enc_str(name, out, depth)
        _enc(getattr(obj, name), out, depth + 1)


def _enc_other(obj: Any, out: bytearray, depth: int) -> None:
    t = type(obj)
    hook = getattr(t, "__cache_key__", None)
    if hook is not None and callable(hook):
        out += b"K"
        _enc_name(t, out)
        _enc(obj.__cache_key__(), out, depth + 1)
        return
    mod = t.__module__ or ""
    if (mod == "numpy" or mod.startswith("numpy.")) and _enc_numpy(obj, out, depth):
        return
    if (mod == "torch" or mod.startswith("torch.")) and _enc_torch(obj, out, depth):
        return
    if isinstance(obj, enum.Enum):
        out += b"E"
        _enc_name(t, out)
        _enc(obj.value, out, depth + 1)
        return
    if dataclasses.is_dataclass(obj):
        _enc_fields(b"C", t, (f.name for f in dataclasses.fields(obj)), obj, out, depth)
        return
    model_fields = getattr(t, "model_fields", None)
    if isinstance(model_fields, dict) and hasattr(obj, "__pydantic_fields_set__"):
        _enc_fields(b"P", t, model_fields.keys(), obj, out, depth)
        return
    if isinstance(obj, tuple) and hasattr(t, "_fields"):  # namedtuple
        out += b"n"
        _enc_name(t, out)
        _enc_seq(b"(")(tuple(obj), out, depth)
        return
    if isinstance(obj, pathlib.PurePath):
        out += b"p"
        _enc_name(t, out)
        _enc_str(str(obj), out, depth)
        return
    if isinstance(obj, memoryview):
        _enc_bytes(obj.tobytes(), out, depth)
        return
    # Subclasses of the plain types (str, int, dict, ...): encoded as the base value plus the subclass
    # name, so a subclass never collides with its base.
    for base, fn in _DISPATCH.items():
        if isinstance(obj, base) and base is not bool:
            out += b"S"
            _enc_name(t, out)
            fn(obj, out, depth)
            return
    raise UncacheableError(
        f"cannot build a cache key from a {type_name(t)} (supported: str, bytes, numbers, None, tuple, list, "
        "dict, set, datetime, Decimal, UUID, enums, dataclasses, pydantic models, numpy arrays, torch "
        "tensors, or objects defining __cache_key__())"
    )


def _enc(obj: Any, out: bytearray, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise UncacheableError(f"argument nested deeper than {_MAX_DEPTH} levels (a cycle?)")
    fn = _DISPATCH.get(type(obj))
    if fn is not None:
        fn(obj, out, depth)
    else:
        _enc_other(obj, out, depth)


def canonical_bytes(obj: Any) -> bytes:
    """The canonical typed encoding of one value (raises ``UncacheableError``)."""
    out = bytearray()
    _enc(obj, out, 0)
    return bytes(out)


def _header(namespace: str, version: Any, qualname: str) -> bytearray:
    out = bytearray(_HEADER)
    out += b"%d;" % KEY_SCHEMA
    _enc_str(namespace, out, 0)
    _enc(version, out, 0)
    _enc_str(qualname, out, 0)
    return out


def make_key(namespace: str, *parts: object, version: object = None, **named: object) -> str:
    """64-hex SHA-256 key for ``parts`` and ``named`` values in ``namespace``.

    ``version`` (any encodable value) changes every key at once when what a computation means changes.
    Raises ``UncacheableError`` when a value can't be encoded canonically.
    """
    out = _header(namespace, version, "")
    _enc_seq(b"(")(parts, out, 0)
    _enc_dict(named, out, 0)
    return hashlib.sha256(out).hexdigest()


def function_key(namespace: str, qualname: str, arguments: Mapping[str, Any], version: Any = None) -> str:
    """Key of a call of the function ``qualname`` with its bound arguments (defaults applied)."""
    return function_key_from_header(bytes(_header(namespace, version, qualname)), arguments)


def function_header(namespace: str, qualname: str, version: Any = None) -> bytes:
    """The constant prefix of every key of one function (``@cached`` computes it once)."""
    return bytes(_header(namespace, version, qualname))


def function_key_from_header(header: bytes, arguments: Mapping[str, Any]) -> str:
    """``function_key`` with the prefix from ``function_header`` (identical result, less work per call)."""
    out = bytearray(header)
    _enc_dict(arguments, out, 0)
    return hashlib.sha256(out).hexdigest()


class KeyExplanation(TypedDict):
    """What ``explain_key`` returns: the key and, as JSON-ready typed descriptions, what went into it."""

    key: str
    schema: int
    namespace: str
    version: object
    parts: list[object]
    named: dict[str, object]


def _describe(obj: Any, depth: int = 0) -> Any:
    """JSON-ready, typed description of a value (long payloads summarised by length and SHA-256)."""
    if depth > _MAX_DEPTH:
        return "<too deep>"
    t = type(obj)
    if t is str:
        if len(obj) > 80:
            return {
                "str": obj[:60] + "...",
                "len": len(obj),
                "sha256": hashlib.sha256(canonical_bytes(obj)).hexdigest()[:16],
            }
        return {"str": obj}
    if t in (int, bool, type(None)):
        return {t.__name__: obj}
    if t is float:
        return {"float": repr(obj), "hex": obj.hex()}
    if t in (bytes, bytearray):
        return {t.__name__: len(obj), "sha256": hashlib.sha256(obj).hexdigest()[:16]}
    if t in (tuple, list):
        return {t.__name__: [_describe(v, depth + 1) for v in obj]}
    if t is dict:
        return {
            "dict": {
                repr(k): _describe(v, depth + 1)
                for k, v in sorted(obj.items(), key=lambda kv: canonical_bytes(kv[0]))
            }
        }
    enc = canonical_bytes(obj)
    return {type_name(t): len(enc), "sha256": hashlib.sha256(enc).hexdigest()[:16]}


def explain_key(namespace: str, *parts: object, version: object = None, **named: object) -> KeyExplanation:
    """What goes into ``make_key(namespace, *parts, version=version, **named)``, with the key itself.

    Returns a JSON-ready dict: ``key``, ``schema``, ``namespace``, ``version``, ``parts`` and ``named`` as
    typed descriptions (``{"str": "..."}``, ``{"float": "0.1", "hex": ...}``, arrays by size and digest).
    """
    return {
        "key": make_key(namespace, *parts, version=version, **named),
        "schema": KEY_SCHEMA,
        "namespace": namespace,
        "version": _describe(version),
        "parts": [_describe(p) for p in parts],
        "named": {k: _describe(v) for k, v in sorted(named.items())},
    }


def explain_function_key(
    namespace: str, qualname: str, arguments: Mapping[str, Any], version: Any = None
) -> dict[str, Any]:
    """``explain_key`` for a ``@cached`` call: the function's name and its bound arguments."""
    return {
        "key": function_key(namespace, qualname, arguments, version),
        "schema": KEY_SCHEMA,
        "namespace": namespace,
        "version": _describe(version),
        "function": qualname,
        "arguments": {k: _describe(v) for k, v in arguments.items()},
    }
