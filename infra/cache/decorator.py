"""``@cached``: cache a sync or async function or method by its bound arguments.

Generator functions (sync and async) are cached as streams: their chunks are recorded and replayed (see
``infra.cache._streams``).

The key is ``function_key(namespace, module.qualname, arguments-with-defaults, version)`` (see
``infra.cache.keys``), so ``f(1)``, ``f(x=1)`` and ``f(1, flag=False)`` (the default) share one entry.
``module.qualname`` is made unique where that name alone is not (``function_identity``): a function a
factory builds adds a digest of its closure cells (read once, at decoration), and a ``__main__`` function
names its script.
A method's ``self`` goes in by its configuration (``infra.cache.identity``: public attributes and
constructor settings, clients / locks / loggers skipped, read at call time), or by the attributes named
in ``key_attrs``; ``key_attrs=[]`` leaves it out. ``cls`` of a classmethod goes in by its name.

The hit path is kept short because it runs on every call:

* binding plans are computed once per function (no ``inspect.Signature.bind`` for plain positional /
  keyword calls);
* calls whose arguments are plain values (str, bytes, int, float, bool, None, and dicts / lists / tuples
  of them) map, through a bounded per-function memo keyed by the exact arguments and their types,
  straight to their SHA-256 key, so a repeated call skips canonicalisation and hashing (the memo holds
  keys, never results, so invalidation and TTL are unaffected);
* an L1 hit then costs one dict lookup.

An argument with no canonical encoding makes the call run uncached: the ``uncacheable`` counter rises and
one warning per function is logged; the call itself is never affected.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import inspect
import logging
import marshal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from infra.cache._missing import MISSING
from infra.cache.identity import MethodIdentity, is_resource, member_value
from infra.cache.keys import (
    UncacheableError,
    canonical_bytes,
    explain_function_key,
    function_header,
    function_key,
    function_key_from_header,
    type_name,
)
from infra.cache.ttl import parse_ttl

if TYPE_CHECKING:
    from infra.cache.core import Cache

__all__ = ["KeyMaker", "cached"]

log = logging.getLogger("infra.cache")
P = ParamSpec("P")
R = TypeVar("R")

_MEMO_MAX = 1024
_PK = inspect.Parameter


class _NotPlain(Exception):
    """An argument the key memo can't represent (it then takes the full canonical path).

    Raised as a fresh instance each time: a module-level instance raised again and again keeps every
    raise's traceback chained on its ``__traceback__`` (frames and all) for as long as the module lives."""


_SCALARS = frozenset({str, bytes, int, bool, float, type(None)})
_marshal = marshal.dumps
#: containers whose marshal form is longer than this are walked instead (see ``_fid``)
_MARSHAL_MAX = 1024


def _fid(x: Any) -> Any:
    """Exact, typed, hashable stand-in for a plain value (str, bytes, numbers, None, containers).

    Containers (an options dict, a list of messages) go through ``marshal`` format 2 when that is small:
    one C call (~0.3 µs for a 3-key options dict, against ~0.9 µs walking it here). Its bytes are exact
    about types and values (``True`` / ``1`` / ``1.0``, ``0.0`` / ``-0.0``, tuple / list and str / bytes
    each encode differently), it refuses subclasses (an IntEnum, a str subclass: ValueError), and format 2
    has no back-references, so equal bytes always mean the same value with the same types: the memo's
    one requirement. Equal values may still give different bytes (dict order): that only costs a memo
    entry. Large containers (big documents in messages) take the walk below instead, where the strings'
    cached hashes spare re-hashing their text on every call.
    """
    t = type(x)
    if t is dict or t is list or t is tuple:
        try:
            m = _marshal(x, 2)
        except ValueError:
            raise _NotPlain from None
        if len(m) <= _MARSHAL_MAX:
            return m
        return _walk(x, t)
    if t is str or t is bytes:
        return (t, x)
    if t is int or t is bool or x is None:
        return (t, x)
    if t is float:
        return (float, x if x else x.hex())
    raise _NotPlain


def _walk(x: Any, t: type) -> Any:
    """``_fid`` of a large container, element by element (no bytes object as big as the container)."""
    if t is dict:
        # Common case (an options dict of str keys and scalar values) without a call per item: items plus
        # the values' exact types. Zero-valued floats (0.0 == -0.0 == 0 == False) and non-str keys take the
        # per-item path.
        vt = tuple(map(type, x.values()))
        if _SCALARS.issuperset(vt):
            kt = tuple(map(type, x))
            if kt.count(str) == len(kt) and (float not in vt or 0 not in x.values()):
                return (dict, tuple(x.items()), vt)  # str keys only: their types need no record
        return (dict, tuple([(_fid(k), _fid(v)) for k, v in x.items()]))
    return (t, tuple([_fid(v) for v in x]))


def function_identity(fn: Callable[..., Any]) -> str:
    """The function part of a key: ``module.qualname``, made unique where that name alone is not.

    * A function in a script run as ``__main__`` names the script instead (``__main__[worker.py]``, its
      path relative to the project root, the folder holding ``config/perf_config.json``, or else to the
      working directory): two scripts' ``process`` are different functions. Run with ``-m``, the module's
      own name is used.
    * A function closing over values (``make(factor)`` returning an ``@cached`` ``f``) adds a digest of its
      closure cells, read once, here: each keyed by the instance-member rule (``infra.cache.identity``), so
      scalars, strings, tuples, enums, classes, functions and settings objects count. Left out: empty
      cells (a name assigned later, ``__class__`` of a method), the function itself, resources (a client,
      a lock), mutable containers (a list / dict / set used as a call log or memo, whose content at
      decoration says nothing), and cells with no key form. An object cell is keyed as it was when
      decorated: a setting changed later on it is not seen (bump ``version``).

    Defaults need no digest: the bound arguments already carry them."""
    module = fn.__module__
    if module == "__main__":
        module = _main_name()
    name = f"{module}.{fn.__qualname__}"
    code = getattr(fn, "__code__", None)
    parts = []
    for var, cell in zip(
        code.co_freevars if code else (), getattr(fn, "__closure__", None) or (), strict=False
    ):
        try:
            content = cell.cell_contents
        except ValueError:  # empty cell
            continue
        if content is fn or type(content) in _MUTABLE or is_resource(content):
            continue
        try:
            parts.append((var, member_value(content, f"<closure>.{var}")))
        except Exception:  # no key form: left out, as before
            continue
    if parts:
        digest = hashlib.blake2b(canonical_bytes(parts), digest_size=8).hexdigest()
        name = f"{name}#{digest}"
    return name


_MUTABLE = frozenset(
    {
        list,
        dict,
        set,
        bytearray,
        collections.deque,
        collections.defaultdict,
        collections.OrderedDict,
        collections.Counter,
    }
)


def _main_name() -> str:
    """``__main__`` made specific: the ``-m`` module name, or the script path (see ``function_identity``)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        return str(spec.name)
    path = getattr(main, "__file__", None)
    if not path:
        return "__main__"  # an interactive session
    script = Path(path).resolve()
    base = Path.cwd().resolve()
    try:
        from infra.config import find_config_file, project_root

        found = find_config_file()
        if found is not None:
            base = project_root(found)
    except Exception:  # a broken config is reported where it is loaded
        pass
    try:
        rel = script.relative_to(base).as_posix()
    except ValueError:
        rel = script.as_posix()
    return f"__main__[{rel}]"


class _Plan:
    """Per-function binding plan: turns ``(args, kwargs)`` into the ordered argument mapping of the key."""

    __slots__ = (
        "defaults",
        "drop_first",
        "first_is_cls",
        "identity",
        "names",
        "npos",
        "positional_only",
        "sig",
        "simple",
    )

    def __init__(self, fn: Callable[..., Any], key_attrs: Any) -> None:
        self.sig = inspect.signature(fn)
        params = list(self.sig.parameters.values())
        first = params[0].name if params else None
        is_method = "." in fn.__qualname__.replace(".<locals>.", "") and first in ("self", "cls")
        # ``self`` is keyed by the instance's configuration (infra.cache.identity), or left out with
        # key_attrs=[] (every instance shares entries)
        ident = MethodIdentity(key_attrs) if is_method and first == "self" else None
        self.identity = None if ident is None or ident.shares_instances else ident
        self.drop_first = ident is not None and ident.shares_instances
        self.first_is_cls = is_method and first == "cls"
        self.simple = all(p.kind in (_PK.POSITIONAL_OR_KEYWORD, _PK.KEYWORD_ONLY) for p in params)
        self.names = [p.name for p in params]
        self.npos = sum(1 for p in params if p.kind == _PK.POSITIONAL_OR_KEYWORD)
        self.positional_only = [p.name for p in params if p.kind == _PK.POSITIONAL_ONLY]
        self.defaults = {p.name: p.default for p in params if p.default is not _PK.empty}

    def arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.simple and len(args) <= self.npos:
            out = dict(zip(self.names, args, strict=False))
            if kwargs:
                for k, v in kwargs.items():
                    if k in out or (k not in self.defaults and k not in self.names):
                        return self._slow(args, kwargs)
                    out[k] = v
            if len(out) < len(self.names):
                for name in self.names:
                    if name not in out:
                        if name not in self.defaults:
                            return self._slow(args, kwargs)  # raises the TypeError the call would raise
                        out[name] = self.defaults[name]
                out = {n: out[n] for n in self.names}  # canonical parameter order
        else:
            out = self._slow(args, kwargs)
        if self.drop_first:
            out.pop(self.names[0], None)
        elif self.identity is not None and self.names[0] in out:
            out[self.names[0]] = self.identity.key_value(out[self.names[0]])
        elif self.first_is_cls and "cls" in out and isinstance(out["cls"], type):
            out["cls"] = type_name(out["cls"])
        return out

    def _slow(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = self.sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)


class KeyMaker:
    """Key for a call: memo fast path for simple argument types, full canonical encoding otherwise.

    ``full_key`` is the reference the memo must agree with (``infra.cache.keys.function_key``, no memo)."""

    __slots__ = (
        "header",
        "ident",
        "identity",
        "memo",
        "namespace",
        "plan",
        "qualname",
        "skip",
        "version",
        "warned",
    )

    def __init__(
        self, fn: Callable[..., Any], namespace: str, version: object, key_attrs: Sequence[str] | None = None
    ) -> None:
        self.plan = _Plan(fn, key_attrs)
        self.ident = self.plan.identity
        self.namespace = namespace
        self.version = version
        self.qualname = f"{fn.__module__}.{fn.__qualname__}"  # for messages
        self.identity = function_identity(fn)  # for the key: the script / closure made part of it
        self.header = function_header(namespace, self.identity, version)  # raises early if version is odd
        self.memo: dict[Any, str] = {}
        self.skip = 1 if self.plan.drop_first or self.ident is not None else 0
        self.warned = False

    def fast_id(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``_args_id``, with the instance's fingerprint first for a method keyed on its instance."""
        if self.ident is None:
            return self._args_id(args, kwargs)
        fp = self.ident.fingerprint(args[0], _fid) if args else None
        if fp is None:
            return None
        ids = self._args_id(args, kwargs)
        return None if ids is None else (fp, ids)

    def _args_id(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Hashable identity of the call, or None when an argument is not a plain value.

        Equal identities must mean equal keys, so every value carries its exact type (``1``, ``True`` and
        ``1.0`` compare equal in Python but key differently), and floats that compare equal yet key
        differently (``0.0`` / ``-0.0``) go by their hex form. A NaN never equals itself, so a call with
        one simply misses the memo and takes the full path.
        """
        a = args[self.skip :] if self.skip else args
        try:
            # One-argument cases spelled out: a comprehension is a function call of its own in 3.11.
            if len(a) == 1:
                x = a[0]
                ids: tuple[Any, ...] = (x if type(x) is str else _fid(x),)
            else:
                ids = tuple([x if type(x) is str else _fid(x) for x in a])
            if kwargs:
                if len(kwargs) == 1:
                    ((k, x),) = kwargs.items()
                    return (ids, ((k, x if type(x) is str else _fid(x)),))
                return (ids, tuple([(k, x if type(x) is str else _fid(x)) for k, x in kwargs.items()]))
        except _NotPlain:
            return None
        return ids

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        fid = self.fast_id(args, kwargs)
        if fid is not None:
            k = self.memo.get(fid)
            if k is not None:
                return k
        k = function_key_from_header(self.header, self.plan.arguments(args, kwargs))
        if fid is not None:
            memo = self.memo
            if len(memo) >= _MEMO_MAX:
                memo.clear()  # bounded; rebuilt from the next calls
            memo[fid] = k
        return k

    def full_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The call's key by the full canonical path: no memo, no precomputed header."""
        return function_key(self.namespace, self.identity, self.plan.arguments(args, kwargs), self.version)

    def clear_memo(self) -> None:
        self.memo.clear()

    def explain(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        return explain_function_key(
            self.namespace, self.identity, self.plan.arguments(args, kwargs), self.version
        )

    def uncacheable(self, cache: Cache, exc: BaseException) -> None:
        with contextlib.suppress(Exception):
            cache.count_uncacheable(self.namespace)
        if not self.warned:
            self.warned = True
            log.warning(
                "@cached %s: call not cacheable, running uncached (%s); warned once", self.qualname, exc
            )


def _helper(km: KeyMaker, do: Callable[[tuple[Any, ...], dict[str, Any]], R], name: str) -> Callable[..., R]:
    """``cache_key`` / ``explain_key`` on the wrapper. On a method they are reached through the class with the
    instance first (``A.run.explain_key(a, "x")``): a bound method (``a.run``) hands its function's attributes
    out unbound, and binding them would cost every cached method call a descriptor call (measured: +115 ns,
    +16 % of a 0.72 us warm hit), so a call missing the instance says how to write it."""
    method = km.plan.identity is not None or km.plan.drop_first

    def helper(*a: Any, **kw: Any) -> R:
        try:
            return do(a, kw)
        except TypeError as exc:
            if not method:
                raise
            cls_name, _, meth = km.qualname.rpartition(".")
            raise TypeError(
                f"{exc}; on a method call {name} through the class with the instance first: "
                f"{cls_name.rpartition('.')[2]}.{meth}.{name}(obj, ...), not obj.{meth}.{name}(...)"
            ) from None

    return helper


def _current(explicit: Cache | None) -> Callable[[], Cache]:
    """The cache a wrapper uses: the one given to ``@cached``, else ``get_cache()`` at call time."""
    if explicit is not None:
        return lambda: explicit

    def current() -> Cache:
        from infra.cache.process import get_cache

        return get_cache()

    return current


def _keyer(km: KeyMaker) -> Callable[[Cache, tuple[Any, ...], dict[str, Any]], str | None]:
    """The full key path of a wrapper: the call's key, or None (uncacheable: counted and warned once;
    a bad call: the function then raises its own ``TypeError``)."""

    def key_or_none(c: Cache, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        try:
            return km.key(args, kwargs)
        except (UncacheableError, RecursionError) as exc:
            km.uncacheable(c, exc)
        except TypeError:
            return None  # bad call: let the function raise its own TypeError
        except Exception as exc:
            km.uncacheable(c, exc)
        return None

    return key_or_none


def _sync_wrapper(
    func: Callable[..., Any], km: KeyMaker, explicit: Cache | None, namespace: str, ttl: float | None
) -> Callable[..., Any]:
    current, key_or_none, fast_id, memo = _current(explicit), _keyer(km), km.fast_id, km.memo

    @functools.wraps(func)
    def swrapper(*args: Any, **kwargs: Any) -> Any:
        c = explicit if explicit is not None else current()
        if not c.enabled:
            return func(*args, **kwargs)
        # key memo looked up inline (two calls fewer on the path every repeated call takes)
        fid = fast_id(args, kwargs)
        k = memo.get(fid) if fid is not None else None
        if k is None:
            k = key_or_none(c, args, kwargs)
            if k is None:
                return func(*args, **kwargs)
        v = c.l1_hit(namespace, k)
        if v is not MISSING:
            return v
        return c.get_or_compute(namespace, k, lambda: func(*args, **kwargs), ttl)

    return swrapper


def _async_wrapper(
    func: Callable[..., Any], km: KeyMaker, explicit: Cache | None, namespace: str, ttl: float | None
) -> Callable[..., Any]:
    """``_sync_wrapper`` for a coroutine function: the same steps, the computation awaited."""
    current, key_or_none, fast_id, memo = _current(explicit), _keyer(km), km.fast_id, km.memo

    @functools.wraps(func)
    async def awrapper(*args: Any, **kwargs: Any) -> Any:
        c = explicit if explicit is not None else current()
        if not c.enabled:
            return await func(*args, **kwargs)
        fid = fast_id(args, kwargs)
        k = memo.get(fid) if fid is not None else None
        if k is None:
            k = key_or_none(c, args, kwargs)
            if k is None:
                return await func(*args, **kwargs)
        v = c.l1_hit(namespace, k)
        if v is not MISSING:
            return v
        return await c.aget_or_compute(namespace, k, lambda: func(*args, **kwargs), ttl)

    return awrapper


@overload
def cached(fn: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def cached(
    fn: None = None,
    /,
    *,
    namespace: str = "inference",
    ttl: float | str | None = None,
    version: object = None,
    include_self: bool = False,
    cache: Cache | None = None,
    key_attrs: Sequence[str] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def cached(
    fn: Callable[P, R] | None = None,
    /,
    *,
    namespace: str = "inference",
    ttl: float | str | None = None,
    version: object = None,
    include_self: bool = False,
    cache: Cache | None = None,
    key_attrs: Sequence[str] | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Cache ``fn``'s results by its arguments. Works on sync and async functions and methods.

    ``ttl``: seconds or a duration string as config takes it (``"1h"``, ``"30d"``; None: the namespace's
    TTL; 0: never expires), checked here: a bad one raises ``ValueError`` at decoration; ``version``: bump
    to drop every old entry of the function; ``cache``: a ``Cache`` to use instead of ``get_cache()``.
    On a method, ``key_attrs`` lists the instance attributes (dotted paths allowed) that determine its
    result; None (default) keys on the instance's configuration (see ``infra.cache.identity``), ``[]``
    leaves the instance out. ``include_self`` is accepted for compatibility: instances are always keyed
    unless ``key_attrs=[]``. The wrapper has ``cache_key(*a, **kw)``, ``explain_key(*a, **kw)``,
    ``cache_namespace``, ``key_maker`` (its ``KeyMaker``) and ``__wrapped__`` (the uncached function).
    """

    ttl_s = parse_ttl(ttl, what="@cached(ttl=...)")  # fails at decoration, never after the work is done

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        km = KeyMaker(func, namespace, version, key_attrs)
        wrapper: Any
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            from infra.cache import _streams

            gen = inspect.isgeneratorfunction(func)
            make = _streams.stream_wrapper if gen else _streams.async_stream_wrapper
            wrapper = make(func, _keyer(km), _current(cache), namespace, ttl_s)  # type: ignore[arg-type]
        elif inspect.iscoroutinefunction(func):
            wrapper = _async_wrapper(func, km, cache, namespace, ttl_s)
        else:
            wrapper = _sync_wrapper(func, km, cache, namespace, ttl_s)
        wrapper.cache_key = _helper(km, km.key, "cache_key")
        wrapper.explain_key = _helper(km, km.explain, "explain_key")
        wrapper.cache_namespace = namespace
        wrapper.key_maker = km  # the key memo's seam (tests, bench/bench_cache.py)
        return wrapper  # type: ignore[no-any-return]

    if fn is not None:
        return decorate(fn)
    return decorate
