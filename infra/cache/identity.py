"""Call identity of a method: which part of the instance goes into a cached method's key.

A method's result depends on its arguments *and* on the instance it runs on (``HybridScorer(weight=10)``
scores differently from ``HybridScorer(weight=1)``), so by default the key covers the instance's
*configuration*, read at call time (a setting changed after construction is honoured):

* the public attributes in the instance's ``__dict__`` (and ``__slots__``), plus the private ones named
  after a constructor parameter (``__init__(self, model)`` storing ``self._model``);
* skipping members that can't define a result: clients, connections, pools, locks, threads, loggers,
  sockets, files, executors, event loops, modules (see ``is_resource``, ``infra.cache.resources``), so
  an instance holding an ``ollama.Client`` or a lock is still cached. A class matched only by its name
  (``...Client``, ``...Pool``) from no known package is the user's own (``LLMClient(model, temperature)``):
  it is keyed by its plain values (str, numbers, bools, None, and tuples / lists / dicts of them) by this
  rule, the rest of it left out;
* a ``weakref.ref`` / ``weakref.proxy`` member is walked through to its referent (a dead one keys as
  ``("weakref", "dead")``: the method sees ``None`` or raises, the same for every dead reference);
* other private attributes (``self._calls``, ``self._memo``) are taken as internal state and left out, and
  so are ``functools.cached_property`` values (derived from the settings);
* a member that is an object of its own (a tokenizer with settings) is keyed the same way, recursively;
  one with no encodable form and no attributes makes the call run uncached (counted, warned once);
* a function member is keyed by what decides its answers, not by its name alone: ``module.qualname``
  plus its closure cells' values, ``__defaults__`` and ``__kwdefaults__`` (each walked by this same rule,
  so a closure over a config object follows that object's settings); a lambda also by a digest of its
  code (every lambda is called ``<lambda>``). An empty closure cell, or a cell whose value has no key
  form, makes the call uncached, naming the member (``post.<closure>[0]``). Globals a function reads are
  not keyed (as for the method's own code: bump ``version``). A member referring back to an instance
  being walked (``self.post = lambda s: self.fmt(s)``) is keyed as a reference to it. Function and
  partial members over plain values keep the key memo (``_callable_fid``);
* ``functools.partial`` / ``partialmethod`` are keyed by ``func``, ``args`` and ``keywords`` (a partial of
  a partial too); a bound method by its function and its owner's configuration (a classmethod bound to
  a class, ``Sub.make``, by that class's name); a bound builtin method (``", ".join``) by its owner; an
  ``re.Pattern`` by pattern and flags; ``operator.itemgetter`` / ``attrgetter`` / ``methodcaller`` by
  their ``__reduce__``; an ``lru_cache`` wrapper by the function it wraps;
* an object whose class has a base implemented in C that holds state outside ``__dict__`` (its instance
  layout is larger than ``object`` plus its slots: ``random.Random``, exceptions, a ``deque`` subclass) is
  keyed by its own ``__getstate__`` when the class defines one, and otherwise can't be keyed: its
  ``__dict__`` would be a partial view, and two different states would share answers;
* a random generator (``random.Random``, ``numpy.random``) is never keyed: its state moves on every draw,
  so keying on it would miss on every call, and a method that draws from it isn't deterministic anyway. The
  call runs uncached, and the warning says to list the attributes that do define the result in
  ``key_attrs`` (when the method doesn't draw from it) or to define ``__cache_key__()``.

A class with ``__cache_key__()`` is keyed by that instead. ``key_attrs=[...]`` (per decorator and per
``wrap`` entry) replaces the rule with an explicit list of attribute names (dotted paths reach into
members: ``"llm.model"``); ``key_attrs=[]`` leaves the instance out, so every instance shares entries.

No I/O here: ``@cached`` (``infra.cache.decorator``) asks ``MethodIdentity`` for a hashable fingerprint on
its fast path and for the encodable value that goes into the key on its slow path.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import itertools
import operator
import random
import re
import threading
import types
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from infra.cache.keys import UncacheableError, canonical_bytes, type_name
from infra.cache.resources import PLAIN as _PLAIN
from infra.cache.resources import WEAK as _WEAK
from infra.cache.resources import is_resource, resource_kind

__all__ = ["MethodIdentity", "instance_config", "is_resource", "member_value"]

_MAX_DEPTH = 8


def _handle(v: Any) -> tuple[tuple[str, Any], ...]:
    """A class named like a handle but from no known client package (the user's ``LLMClient(model,
    temperature)``): its plain members (str, numbers, bools, None; tuples, lists, dicts of them) by the
    member rule; the rest (its own connection, a session) is left out, as a handle's would be."""
    return tuple([(n, x) for n, x in _members(v) if _plain_tuple(x)])


def _plain_tuple(x: Any) -> bool:
    t = type(x)
    if t is dict:
        return all(_plain_tuple(k) and _plain_tuple(y) for k, y in x.items())
    return t in _PLAIN or ((t is tuple or t is list) and all(_plain_tuple(y) for y in x))


class _TypePlan:
    """Per class: the private attribute names that hold constructor arguments, and the slot names."""

    __slots__ = ("c_state", "derived", "has_hook", "init_private", "layout", "slots", "slow_only")

    def __init__(self, t: type) -> None:
        self.has_hook = getattr(t, "__cache_key__", None) is not None
        #: the last instance layout seen; most instances of a class share one
        self.layout: _Layout | None = None
        names: set[str] = set()
        try:
            for p in inspect.signature(t).parameters.values():
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                    names.add(p.name)
        except (TypeError, ValueError):
            pass
        self.init_private = frozenset({f"_{n}" for n in names} | {n for n in names if n.startswith("_")})
        slots: list[str] = []
        for klass in t.__mro__:
            s = klass.__dict__.get("__slots__", ())
            for name in (s,) if isinstance(s, str) else s:
                if name not in ("__dict__", "__weakref__") and name not in slots:
                    slots.append(name)
        self.slots = tuple(slots)
        self.c_state = _has_c_state(t, len(slots))
        #: no fast fingerprint: the hook or the C state decides, on the slow path
        self.slow_only = self.has_hook or self.c_state
        # functools.cached_property values land in __dict__ on first use; they derive from the settings,
        # and keying on them would change the key after the first access
        self.derived = frozenset(
            name
            for klass in t.__mro__
            for name, attr in vars(klass).items()
            if isinstance(attr, functools.cached_property)
        )


def _has_c_state(t: type, nslots: int) -> bool:
    """True when instances of ``t`` hold state that neither ``__dict__`` nor ``__slots__`` shows: some base
    is implemented in C with fields of its own (``_random.Random``'s Mersenne state, ``BaseException``'s
    args, ``functools.partial``'s func). Read from the layout, which works for C types built either way
    (static or heap): a class built from Python code is ``object`` plus one pointer per slot, plus the
    ``__dict__`` / ``__weakref__`` pointers when those sit at a positive offset."""
    if t.__itemsize__:
        return True  # variable-size layout (an int / tuple / bytes subclass): C data
    size = t.__basicsize__ - 8 * nslots
    size -= 8 * ((t.__dictoffset__ > 0) + (t.__weakrefoffset__ > 0))
    return size > object.__basicsize__


_plans: dict[type, _TypePlan] = {}


def _plan(t: type) -> _TypePlan:
    plan = _plans.get(t)
    if plan is None:
        plan = _plans[t] = _TypePlan(t)
    return plan


_NO_VALUE: Any = object()


def _members(obj: Any) -> list[tuple[str, Any]]:
    """The (name, value) pairs the default rule keys on, resources left out, in attribute order."""
    plan = _plan(type(obj))
    out: list[tuple[str, Any]] = []
    d = getattr(obj, "__dict__", None)
    if d is not None:
        private_ok = plan.init_private
        for name, value in d.items():
            if (name[:1] == "_" and name not in private_ok) or name in plan.derived:
                continue
            if type(value) not in _PLAIN and is_resource(value):
                continue
            out.append((name, value))
    for name in plan.slots:
        if name[:1] == "_" and name not in plan.init_private:
            continue
        value = getattr(obj, name, _NO_VALUE)
        if value is _NO_VALUE or (type(value) not in _PLAIN and is_resource(value)):
            continue
        out.append((name, value))
    return out


def instance_config(obj: Any, *, _depth: int = 0, _path: str = "") -> dict[str, Any]:
    """The configuration of ``obj`` under the default rule, as an encodable dict (nested objects keyed
    the same way). Raises ``UncacheableError`` naming the member that has no encodable form."""
    walking = _walking()
    walking.append(id(obj))
    try:
        return {name: _value(v, _depth + 1, f"{_path}{name}") for name, v in _members(obj)}
    finally:
        walking.pop()


def member_value(v: Any, path: str) -> Any:
    """``v`` keyed as an instance member is (the rule above); raises ``UncacheableError``. ``@cached`` keys
    a decorated function's own closure cells with it, once, at decoration."""
    return _value(v, 1, path)


_local = threading.local()


def _walking() -> list[int]:
    """The ids of the objects whose configuration this thread is walking, outermost first: a member that
    refers back to one of them (``self.post = lambda s: self.fmt(s)``, ``self.handler = self.process``)
    is keyed as a back-reference to that level, not walked again until the depth limit."""
    ids: list[int] | None = getattr(_local, "ids", None)
    if ids is None:
        ids = _local.ids = []
    return ids


def _value(v: Any, depth: int, path: str) -> Any:
    """``v`` itself when it encodes; containers walked; an object keyed by its own configuration."""
    t = type(v)
    if t in _PLAIN:
        return v
    if depth > _MAX_DEPTH:
        raise UncacheableError(f"member {path!r} nests objects deeper than {_MAX_DEPTH} levels (a cycle?)")
    if t is list or t is tuple:
        return t(_value(x, depth + 1, f"{path}[{i}]") for i, x in enumerate(v))
    if t is dict:
        return {k: _value(x, depth + 1, f"{path}[{k!r}]") for k, x in v.items()}
    kind = resource_kind(t)
    if kind == 1:
        return ("resource", type_name(t))  # inside a container: its presence, not its state
    if kind == 2:
        return ("handle", type_name(t), _handle(v))
    if issubclass(t, _WEAK):  # walked through: a proxy's ``__repr__`` is its referent's, bound to it
        try:
            referent = v() if issubclass(t, weakref.ReferenceType) else v.__repr__.__self__
        except ReferenceError:
            referent = None
        return ("weakref", "dead") if referent is None else _value(referent, depth + 1, path)
    walking = _local.__dict__.get("ids")
    if walking and id(v) in walking:
        return ("back-reference", walking.index(id(v)))
    if t is types.FunctionType:
        return _function(v, depth, path)
    if isinstance(v, (functools.partial, functools.partialmethod)):
        return (
            "partial",
            type_name(t),
            _value(v.func, depth + 1, f"{path}.func"),
            _value(v.args, depth + 1, f"{path}.args"),
            _value(v.keywords, depth + 1, f"{path}.keywords"),
        )
    if inspect.ismethod(v):  # a classmethod bound to a subclass (``Sub.make``) by that class's name
        owner = v.__self__
        state = _owner(owner, depth, path)
        return ("method", f"{v.__func__.__module__}.{v.__func__.__qualname__}", state)
    if t is types.BuiltinMethodType or t is types.MethodWrapperType:
        owner = getattr(v, "__self__", None)
        if owner is not None and not inspect.ismodule(owner):  # bound: ", ".join, "-en".__add__
            return ("method", f"{type_name(type(owner))}.{v.__name__}", _owner(owner, depth, path))
        return ("callable", f"{getattr(v, '__module__', '')}.{getattr(v, '__qualname__', repr(v))}")
    if isinstance(v, type) or inspect.isfunction(v) or inspect.isbuiltin(v):
        return ("callable", f"{getattr(v, '__module__', '')}.{getattr(v, '__qualname__', repr(v))}")
    if t is re.Pattern:
        return ("regex", v.pattern, v.flags)
    if t in _REDUCED:
        return ("reduced", _value(v.__reduce__(), depth + 1, path))
    if t is _LRU_WRAPPER:
        return ("wrapped", type_name(t), _value(v.__wrapped__, depth + 1, f"{path}.__wrapped__"))
    try:
        canonical_bytes(v)
        return v
    except UncacheableError:
        pass
    plan = _plan(t)
    if _is_rng(v) or plan.c_state:
        return _c_state_value(v, depth, path)
    if hasattr(v, "__dict__") or plan.slots:
        return ("object", type_name(t), instance_config(v, _depth=depth, _path=f"{path}."))
    raise UncacheableError(
        f"instance member {path!r} is a {type_name(t)}, which has no cache-key form; list the attributes "
        "that define the result in key_attrs, or give the class a __cache_key__() method"
    )


def _owner(owner: Any, depth: int, path: str) -> Any:
    """A bound method's owner: a class by name, a resource not at all, an instance by its configuration."""
    if isinstance(owner, type):
        return ("class", type_name(owner))
    return None if is_resource(owner) else _value(owner, depth + 1, path)


#: C callables whose ``__reduce__`` is exactly their configuration
_REDUCED = frozenset({operator.itemgetter, operator.attrgetter, operator.methodcaller})
_LRU_WRAPPER = type(functools.lru_cache(maxsize=1)(len))


def _function(fn: types.FunctionType, depth: int, path: str) -> Any:
    """A function by name, code digest for a lambda, defaults, keyword defaults and closure cell values."""
    name = f"{fn.__module__}.{fn.__qualname__}"
    code = fn.__code__
    cells: list[Any] = []
    for i, (var, cell) in enumerate(zip(code.co_freevars, fn.__closure__ or (), strict=True)):
        where = f"{path}.<closure>[{i}]"
        try:
            content = cell.cell_contents
        except ValueError:
            raise UncacheableError(
                f"instance member {where!r} (free variable {var!r} of {name}) is an empty closure cell "
                "(assigned only later, or deleted), so it can't be keyed; list the attributes that define "
                "the result in key_attrs, or give the class a __cache_key__() method"
            ) from None
        cells.append((var, ("recursive",) if content is fn else _value(content, depth + 1, where)))
    return (
        "function",
        name,
        _code_digest(code) if "<lambda>" in fn.__qualname__ else None,
        _value(fn.__defaults__, depth + 1, f"{path}.__defaults__"),
        _value(fn.__kwdefaults__, depth + 1, f"{path}.__kwdefaults__"),
        tuple(cells),
    )


@functools.lru_cache(maxsize=1024)  # per code object: a lambda member is keyed on every call
def _code_digest(code: types.CodeType) -> str:
    """What a lambda does, without its line numbers: bytecode, names and constants (nested code too).
    Two lambdas in one function share a qualname; this tells them apart. (Bytecode differs between
    Python versions, so a persistent entry keyed on a lambda misses after an upgrade: a miss, not a
    wrong answer.)"""
    h = hashlib.blake2b(digest_size=16)

    def feed(c: types.CodeType) -> None:
        h.update(c.co_code)
        h.update(repr((c.co_names, c.co_varnames, c.co_freevars)).encode())
        for const in c.co_consts:
            if isinstance(const, types.CodeType):
                feed(const)
            else:
                h.update(repr((type(const).__name__, const)).encode())

    feed(code)
    return h.hexdigest()


_HINT = "list the attributes that define the result in key_attrs, or give the class a __cache_key__() method"


def _is_rng(v: Any) -> bool:
    return isinstance(v, random.Random) or (type(v).__module__ or "").startswith("numpy.random")


def _c_state_value(v: Any, depth: int, path: str) -> Any:
    """An object whose state a C base holds: its class's own ``__getstate__`` when it defines one, else
    ``UncacheableError`` (keying on the rest of ``__dict__`` would let different states share answers).
    A random generator is never keyed (see the module docstring)."""
    t = type(v)
    hint = _HINT
    if _is_rng(v):
        raise UncacheableError(
            f"instance member {path or '(the instance)'!r} is a random generator ({type_name(t)}): its state "
            "moves on every draw, so it can't be keyed, and a method that draws from it isn't deterministic "
            f"(don't cache that one); if the method doesn't use it, {hint}"
        )
    getstate = getattr(t, "__getstate__", None)
    if getstate is not None and getstate is not getattr(object, "__getstate__", None):
        return ("state", type_name(t), _value(v.__getstate__(), depth + 1, f"{path}.__getstate__()"))
    raise UncacheableError(
        f"instance member {path or '(the instance)'!r} is a {type_name(t)}, whose state is held by a base "
        f"implemented in C ({_c_base_names(t)}), outside its __dict__, so it has no cache-key form; {hint}"
    )


def _c_base_names(t: type) -> str:
    """The deepest class in ``t``'s MRO whose layout holds C state (``_random.Random``)."""
    return next((type_name(k) for k in reversed(t.__mro__[:-1]) if _plan(k).c_state), type_name(t))


class MethodIdentity:
    """How one cached method keys its instance: the default rule, or an explicit ``key_attrs`` list."""

    __slots__ = ("key_attrs", "paths")

    def __init__(self, key_attrs: Sequence[str] | None = None) -> None:
        if isinstance(key_attrs, str):
            raise TypeError(f"key_attrs must be a list of attribute names, got the string {key_attrs!r}")
        self.key_attrs = None if key_attrs is None else tuple(key_attrs)
        for name in self.key_attrs or ():
            if not isinstance(name, str) or not all(p.isidentifier() for p in name.split(".")):
                raise ValueError(f"key_attrs: {name!r} is not an attribute name (or dotted path)")
        self.paths = tuple(tuple(n.split(".")) for n in self.key_attrs or ())

    @property
    def shares_instances(self) -> bool:
        """``key_attrs=[]``: the instance is left out of the key (every instance shares entries)."""
        return self.key_attrs == ()

    def _explicit(self, obj: Any) -> list[tuple[str, Any]]:
        out = []
        for name, parts in zip(self.key_attrs or (), self.paths, strict=True):
            value = obj
            for part in parts:
                value = getattr(value, part, _NO_VALUE)
                if value is _NO_VALUE:
                    raise UncacheableError(
                        f"key_attrs names {name!r}, but the {type_name(type(obj))} has no attribute {part!r}"
                    )
            out.append((name, value))
        return out

    def key_value(self, obj: Any) -> Any:
        """What goes into the key in place of ``self`` (raises ``UncacheableError``)."""
        if getattr(type(obj), "__cache_key__", None) is not None:
            return obj  # the key encoder calls the class's own hook
        if self.key_attrs is None:
            if _plan(type(obj)).c_state:
                return ("perf-infra/instance", type_name(type(obj)), _c_state_value(obj, 0, ""))
            config = instance_config(obj)
        else:
            walking = _walking()
            walking.append(id(obj))
            try:
                config = {n: _value(v, 1, n) for n, v in self._explicit(obj)}
            finally:
                walking.pop()
        return ("perf-infra/instance", type_name(type(obj)), config)

    def fingerprint(self, obj: Any, fid: Callable[[Any], Any]) -> Any:
        """A hashable stand-in, equal only when ``key_value`` is: the type plus each keyed member's exact
        plain-value id (``fid`` raises for non-plain values; then None, and the caller takes the slow
        path)."""
        t = type(obj)
        plan = _plans.get(t) or _plan(t)
        if plan.slow_only:
            return None
        try:
            if self.key_attrs is None and not plan.slots:
                return self._fast_default(obj, t, plan, fid)
            members = _members(obj) if self.key_attrs is None else self._explicit(obj)
            return (t, tuple([(n, v if type(v) is str else fid(v)) for n, v in members]))
        except Exception:  # not plain, or a missing key_attr
            pass
        try:  # function / partial members over plain values (B.post = make_suffixer("-en")) still memoise
            members = _members(obj) if self.key_attrs is None else self._explicit(obj)
            return (t, _CALLABLE_FP, tuple([(n, _callable_fid(v, fid)) for n, v in members]))
        except Exception:  # the slow path says what is wrong
            return None

    @staticmethod
    def _fast_default(obj: Any, t: type, plan: _TypePlan, fid: Callable[[Any], Any]) -> Any:
        """The default rule's fingerprint for a plain ``__dict__`` instance, on every cached call.

        The names and value types (taken in C: ``tuple(map(type, ...))``) select a cached layout, which
        says which values are kept; scalars then go in as they are, since the types tuple already tells
        ``1`` from ``True`` from ``1.0``. The one scalar equality that isn't key equality is ``0.0 ==
        -0.0``: any zero among the kept values takes the exact per-value path (``fid``)."""
        d = obj.__dict__
        keys = tuple(d)
        values = tuple(d.values())
        types = tuple(map(type, values))
        layout = plan.layout
        if layout is None or layout.keys != keys or layout.types != types:
            layout = plan.layout = _layout(plan, keys, values, types)
        kept = layout.pick(values)
        if not layout.scalars or 0 in kept:
            if layout.callables:  # a function / partial member: ids through its cells (no raise first)
                kept = tuple([_callable_fid(v, fid) for v in kept])
            else:
                kept = tuple([v if type(v) is str else fid(v) for v in kept])
        return (t, layout.number, kept)  # the layout's number stands for its names and types (cheap to hash)


#: marks a fingerprint taken by ``_callable_fid`` (a form no plain-value id has)
_CALLABLE_FP: Any = object()


def _callable_fid(v: Any, fid: Callable[[Any], Any], depth: int = 0) -> Any:
    """``fid`` extended to functions and ``functools.partial`` over plain values, for the memo: equal only
    when ``_value`` is. A function by module, qualname and code object (code equality covers what
    ``_code_digest`` reads) plus its defaults and closure cells; raises for anything else not plain (an
    empty cell too), and the caller takes the slow path."""
    t = type(v)
    if t is str:
        return v
    if depth > 4:
        raise UncacheableError("nested too deep for the memo")  # (a recursive closure): the slow path
    if t is types.FunctionType:
        cells = v.__closure__
        return (
            _CALLABLE_FP,
            v.__module__,
            v.__qualname__,
            v.__code__,
            fid(v.__defaults__),
            fid(v.__kwdefaults__),
            tuple([_callable_fid(c.cell_contents, fid, depth + 1) for c in cells]) if cells else (),
        )
    if t is functools.partial:
        return (_CALLABLE_FP, t, _callable_fid(v.func, fid, depth + 1), fid(v.args), fid(v.keywords))
    if resource_kind(t) == 2:  # a handle-named settings class: its plain members (see ``_handle``)
        return (_CALLABLE_FP, t, tuple([(n, fid(x)) for n, x in _handle(v)]))
    return fid(v)


_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})
_CALLABLE_TYPES = frozenset({types.FunctionType, functools.partial})
_layout_numbers = itertools.count()


@dataclasses.dataclass(frozen=True, slots=True)
class _Layout:
    """An instance layout the default rule has seen, and which of its values it keeps."""

    keys: tuple[str, ...]  # the attribute names, in ``__dict__`` order
    types: tuple[type, ...]  # their values' exact types
    pick: Callable[[Any], Any]  # the kept values out of ``tuple(__dict__.values())``
    scalars: bool  # every kept value is a plain scalar (goes into the fingerprint as it is)
    callables: bool  # some kept value is a function, a partial or a handle-named class (``_callable_fid``)
    number: int  # unique per layout built: stands for names and types in the fingerprint


def _layout(
    plan: _TypePlan, keys: tuple[str, ...], values: tuple[Any, ...], types: tuple[type, ...]
) -> _Layout:
    """Which of an instance's attributes the default rule keeps (the same decision as ``_members``).
    Each layout built gets a new number, so equal numbers always mean equal names and types."""
    keep = [
        i
        for i, (name, value) in enumerate(zip(keys, values, strict=True))
        if not (name[:1] == "_" and name not in plan.init_private)
        and name not in plan.derived
        and not (types[i] not in _PLAIN and is_resource(value))
    ]
    if not keep:
        pick: Callable[[Any], Any] = lambda v: ()  # noqa: E731
    elif len(keep) == 1:
        i = keep[0]
        pick = lambda v: (v[i],)  # noqa: E731
    else:
        pick = operator.itemgetter(*keep)
    return _Layout(
        keys,
        types,
        pick,
        all(types[i] in _SCALAR_TYPES for i in keep),
        any(types[i] in _CALLABLE_TYPES or resource_kind(types[i]) == 2 for i in keep),
        next(_layout_numbers),
    )
