"""Independent hits: how the L1 keeps a value so that every hit hands back its own copy (issue 14, item 2).

The unwrapped function returns a fresh value on every call, so a caller may edit what it got. A cache
that handed every caller the same object would let one caller's edit change what every later caller gets
(``functools.lru_cache`` does exactly that). Here a hit returns a value equal to, and independent of,
what any other call got, on every tier and entry point.

``freeze`` turns a value into ``(stored, thaw)``: the L1 keeps ``stored``, and a hit returns ``stored``
itself when ``thaw`` is None (the value is immutable, so sharing it is safe) or ``thaw(stored)``: a new
object each time. Which form, decided once when the value is stored (never on the hit):

* immutable values (str, bytes, numbers, None, enum members, datetimes, Decimal, UUID, and tuples /
  frozensets of those) are shared as they are;
* values made only of exact built-in containers and scalars (the codec's ``JSON`` kind: an options dict,
  a list of results) are kept as ``marshal`` bytes; ``marshal.loads`` rebuilds a ~1 KB dict in ~3 us
  (``json.loads`` of the same takes ~7 us, ``copy.deepcopy`` ~25 us, a diskcache memoize hit ~23 us).
  ``marshal`` is only used in memory, never stored: its format is this interpreter's own;
* a numpy array from the codec is read-only over immutable bytes (it can't be made writeable): shared;
* anything else the codec stored (dataclasses, pydantic models, tagged values) is rebuilt from its stored
  payload by the namespace's codec on each hit, exactly as a fresh process would read it;
* with no codec at hand (``freeze_plain``: the in-process memo helpers), other values go through
  ``copy.deepcopy`` on the way in and on every hit; a value that can't be deep-copied is shared (logged
  once per type).

``thaw_reference`` is the plain twin the fast forms must agree with (``copy.deepcopy``); the tests check
that both give equal values of identical types, never the stored object itself.
"""

from __future__ import annotations

import copy
import datetime as _dt
import decimal
import enum
import logging
import marshal
import uuid
from collections.abc import Callable
from typing import Any

from infra.cache.codecs import F64LIST, JSON, NDARRAY

__all__ = ["Thaw", "freeze_encoded", "freeze_plain", "is_immutable", "thaw", "thaw_reference"]

log = logging.getLogger("infra.cache")

#: how a hit rebuilds its own copy from what the L1 keeps (None: the kept value is immutable, shared)
Thaw = Callable[[Any], Any] | None

_SCALARS = frozenset(
    {
        str,
        bytes,
        int,
        float,
        bool,
        complex,
        type(None),
        range,
        _dt.datetime,
        _dt.date,
        _dt.time,
        _dt.timedelta,
        _dt.timezone,
        decimal.Decimal,
        uuid.UUID,
    }
)
_PLAIN = frozenset({str, bytes, int, float, bool, complex, type(None), dict, list, tuple, set, frozenset})
_MAX_DEPTH = 100
_marshal_loads = marshal.loads
_warned: set[type] = set()


def is_immutable(value: Any, depth: int = 0) -> bool:
    """True for values no caller can change: scalars, enum members, and tuples / frozensets of those."""
    t = type(value)
    if t in _SCALARS or isinstance(value, enum.Enum):
        return True
    if (t is tuple or t is frozenset) and depth < _MAX_DEPTH:
        return all(is_immutable(v, depth + 1) for v in value)
    return False


def _plain(value: Any, depth: int = 0) -> bool:
    """True when ``value`` is built only of exact built-in containers and scalars (marshal round-trips it
    exactly: marshal would write a bytearray or a numpy array as bytes, so those are not plain)."""
    t = type(value)
    if t not in _PLAIN or depth > _MAX_DEPTH:
        return False
    if t is dict:
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())
    if t is list or t is tuple or t is set or t is frozenset:
        return all(_plain(v, depth + 1) for v in value)
    return True


def freeze_encoded(value: Any, kind: int, payload: bytes, decode: Callable[[bytes], Any]) -> tuple[Any, Thaw]:
    """The L1 form of a value the codec stored as ``payload`` of ``kind`` (``decode`` reads it back)."""
    t = type(value)
    if t in _SCALARS:
        return value, None
    if kind in (JSON, F64LIST):  # exact built-in types only (the codec checked every one)
        return marshal.dumps(value), _marshal_loads
    if kind == NDARRAY:
        return decode(payload), None  # read-only over bytes: can't be made writeable, so shared
    if is_immutable(value):
        return value, None
    return payload, decode


def freeze_plain(value: Any) -> tuple[Any, Thaw]:
    """The stored form of a value with no codec at hand (the in-process memo helpers)."""
    if is_immutable(value):
        return value, None
    if _plain(value):
        try:
            return marshal.dumps(value), _marshal_loads
        except (ValueError, RecursionError):
            pass
    try:
        return copy.deepcopy(value), copy.deepcopy
    except Exception as exc:
        t = type(value)
        if t not in _warned:
            _warned.add(t)
            log.warning("memo: a %s can't be copied (%s); hits share one object", t.__qualname__, exc)
        return value, None


def thaw(stored: Any, how: Thaw) -> Any:
    """What a hit hands back for an L1 entry (the hot paths inline this)."""
    return stored if how is None else how(stored)


def thaw_reference(value: Any) -> Any:
    """The plain twin of ``freeze``/``thaw``: a deep copy (immutable values shared)."""
    return value if is_immutable(value) else copy.deepcopy(value)
