"""``cached_class``: a class whose listed methods go through ``@cached`` (and ``timed``), and the in-place
variant that ``patch()`` uses.

Two ways to put the cache in front of a user's methods, both built on the one ``infra.cache.cached``
decorator (so keys, codecs, single-flight and fail-open are the cache's, not a second caching path):

* ``cached_class(cls, methods=[...])`` returns a thin subclass with the same name, module, qualname and
  docstring whose listed methods are cached; ``isinstance(obj, cls)`` holds, signatures and docstrings
  are the originals' (``functools.wraps``), ``async def`` stays ``async def``, static and class methods stay
  what they were. Instances pickle (and copy) as instances of the original class.
* ``patch_class_in_place(cls, ...)`` sets the cached methods on ``cls`` itself, for workers that can't
  change their imports; ``PatchRecord.undo()`` puts back exactly what was there.

Keys use the original function's ``module.qualname``, so the subclass, the patched class and a plain
``@cached`` on the same function all share entries. With the layer off (``enabled: false`` or
``cache.enabled: false`` when wrapping), ``cached_class`` returns ``cls`` itself: no per-call cost at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from infra.config._switch import metrics_enabled
from infra.config.sections.wrap import WrapEntry
from infra.integrate._targets import KIND_CLASS, KIND_STATIC, MethodPlan, describe_entry, plan_methods

if TYPE_CHECKING:
    from infra.cache import Cache

__all__ = [
    "MethodSettings",
    "PatchRecord",
    "build_method",
    "cached_class",
    "entry_settings",
    "patch_class_in_place",
]

C = TypeVar("C", bound=type)

_ABSENT: Any = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class MethodSettings:
    """How one method is cached: ``namespace`` (default: the class name), ``ttl`` seconds (None: the
    namespace's), ``version`` (bump to drop old entries), ``key_attrs`` (the instance attributes that
    define the result; None: its configuration, see ``infra.cache.identity``; ``()``: none, instances
    share entries). ``include_self`` is kept for compatibility (instances are keyed by default)."""

    namespace: str | None = None
    ttl: float | str | None = None
    version: str | None = None
    include_self: bool = False
    key_attrs: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.namespace is not None and (not isinstance(self.namespace, str) or not self.namespace):
            raise ValueError(f"namespace must be a non-empty string or None, got {self.namespace!r}")
        if self.ttl is not None:
            # the one parser @cached and config use: seconds or "90s" / "30m" / "1h30m" / "30 days" (0: never
            # expires), checked here, where the class is wrapped, never after a call did its work
            from infra.cache.ttl import parse_ttl

            object.__setattr__(self, "ttl", parse_ttl(self.ttl, what="ttl"))
        if isinstance(self.key_attrs, str):
            raise ValueError(
                f"key_attrs must be a list of attribute names, got the string {self.key_attrs!r}"
            )


def entry_settings(entry: WrapEntry) -> MethodSettings | None:
    """How a ``wrap`` entry's methods are cached (``ttl: 0`` never expires, as everywhere the cache reads a
    TTL; see ``infra.cache.ttl``). Never None now; the Optional is kept for its callers' checks."""
    return MethodSettings(
        namespace=entry.namespace,
        ttl=entry.ttl,
        version=entry.version,
        include_self=entry.include_self,
        key_attrs=entry.key_attrs,
    )


def build_method(
    cls: type, plan: MethodPlan, settings: MethodSettings, *, cache: Any = None, timing: bool = True
) -> Any:
    """The cached (and timed) replacement for one method, as a class attribute (plain, static or class)."""
    from infra.cache import cached

    namespace = settings.namespace or cls.__name__
    fn: Any = cached(
        namespace=namespace,
        ttl=settings.ttl,
        version=settings.version,
        key_attrs=settings.key_attrs,
        cache=cache,
    )(plan.function)
    if timing:
        fn = _timed(f"{cls.__name__}.{plan.name}", fn)
    fn.__infra_wrapped__ = plan.function  # lets a second wrap start from the original, never cache twice
    fn.__infra_namespace__ = namespace
    if plan.kind == KIND_STATIC:
        return staticmethod(fn)
    if plan.kind == KIND_CLASS:
        return classmethod(fn)
    return fn


def _timing(requested: bool | None) -> bool:
    """Whether the methods are timed: asked for (None: yes) AND ``metrics_enabled()``. The operator's
    off switch (``metrics.enabled: false``, ``PERF_METRICS_ENABLED=0``) wins over ``timing=True``, so
    with metrics off no part adds a series."""
    return requested is not False and metrics_enabled()


def _timed(operation: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    try:
        from infra.metrics import timed

        return timed(operation)(fn)
    except Exception:
        from infra.integrate._failures import record_failure

        record_failure("metrics", f"timing {operation} unavailable")
        return fn


def _layer_off() -> bool:
    """True when the config says the layer or its cache is off (then wrapping returns the original)."""
    try:
        from infra.config import get_config

        cfg = get_config()
    except Exception:
        return False
    return not (cfg.enabled and cfg.cache.enabled)


def _reduce_as(original: type) -> Callable[[Any, int], Any]:
    """``__reduce_ex__`` that names the original class, so pickle (by reference) and copy keep working."""

    def __reduce_ex__(self: Any, protocol: int) -> Any:
        rv = object.__reduce_ex__(self, max(protocol, 2))
        if (
            isinstance(rv, tuple)
            and len(rv) >= 2
            and isinstance(rv[1], tuple)
            and rv[1]
            and rv[1][0] is type(self)
        ):
            # copyreg.__newobj__ insists on the object's own class; rebuild through _new_as instead.
            rv = (_new_as, (original, *rv[1][1:]), *rv[2:])
        return rv

    return __reduce_ex__


def _copy_keep_class(self: Any) -> Any:
    """``copy.copy`` of a cached instance stays cached (pickle, by contrast, names the original class)."""
    return _reconstruct(self, None)


def _deepcopy_keep_class(self: Any, memo: dict[int, Any]) -> Any:
    return _reconstruct(self, memo)


def _reconstruct(obj: Any, memo: dict[int, Any] | None) -> Any:
    """A copy of ``obj`` of its own (cached) class, as ``copy.copy`` / ``copy.deepcopy`` build one from
    ``object.__reduce_ex__``: the named seam into the standard library's private ``copy._reconstruct``.
    Why: the class's ``__reduce_ex__`` names the original class (for pickle), so the public ``copy``
    functions would hand back an uncached instance; rebuilding the reduce value by hand would repeat
    ``_reconstruct``'s state, slot and memo handling (a deep copy registers the new object in ``memo``
    before copying its state, which keeps self-references working)."""
    import copy

    rebuild = copy._reconstruct  # type: ignore[attr-defined]
    return rebuild(obj, memo, *object.__reduce_ex__(obj, 4))


def _new_as(cls: type, *args: Any) -> Any:
    """Unpickling helper: a bare instance of ``cls`` (its state is set from the pickle afterwards)."""
    return cls.__new__(cls, *args)


def cached_class(
    cls: C,
    methods: Sequence[str],
    *,
    namespace: str | None = None,
    ttl: float | str | None = None,
    version: str | None = None,
    include_self: bool = False,
    key_attrs: Sequence[str] | None = None,
    cache: Cache | None = None,
    per_method: dict[str, MethodSettings] | None = None,
    timing: bool | None = None,
    where: str | None = None,
) -> C:
    """A subclass of ``cls`` whose ``methods`` are cached through ``infra.cache.cached``.

    ``namespace`` defaults to the class name; ``ttl`` (seconds or a duration string as ``@cached`` and
    config take it: ``"1h"``, ``"30d"``) to the namespace's; ``version`` keys the
    entries (bump it when the method's code changes its results); ``key_attrs`` names the instance
    attributes that define the results (default: the instance's configuration, see
    ``infra.cache.identity``; ``[]``: instances share entries). Results are
    also timed as ``ClassName.method`` while ``metrics.enabled`` is on (``timing=False`` turns that off;
    ``timing=True`` never turns it on with metrics off: the operator's switch wins).
    ``cache`` is a ``Cache`` to use instead of ``get_cache()``; ``per_method`` overrides settings by name.

    With the layer off in the current config, returns ``cls`` unchanged. Raises ``WrapError`` naming the
    method when one doesn't exist or can't be cached (a property, a special method).
    """
    if not isinstance(cls, type):
        raise TypeError(f"cached_class() takes a class, got {type(cls).__name__}")
    label = where or describe_entry(None, f"{cls.__module__}.{cls.__qualname__}")
    plans = plan_methods(cls, methods if isinstance(methods, str) else tuple(methods), where=label)
    base = MethodSettings(  # a bad ttl or namespace fails here, as @cached fails at decoration
        namespace=namespace,
        ttl=ttl,
        version=version,
        include_self=include_self,
        key_attrs=None if key_attrs is None else tuple(key_attrs),
    )
    if cache is None and _layer_off():
        return cls
    return _subclass(
        cls, [(p, (per_method or {}).get(p.name, base)) for p in plans], cache=cache, timing=timing
    )


def _subclass(
    cls: C, items: Iterable[tuple[MethodPlan, MethodSettings]], *, cache: Any, timing: bool | None
) -> C:
    timing = _timing(timing)
    ns: dict[str, Any] = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        "__slots__": (),  # adds no __dict__ to a slotted class
        "__infra_original__": cls,
    }
    for plan, settings in items:
        ns[plan.name] = build_method(cls, plan, settings, cache=cache, timing=timing)
    if _default_reduce(cls):
        ns["__reduce_ex__"] = _reduce_as(cls)
        if not hasattr(cls, "__copy__"):
            ns["__copy__"] = _copy_keep_class
        if not hasattr(cls, "__deepcopy__"):
            ns["__deepcopy__"] = _deepcopy_keep_class
    # type(cls) keeps a metaclass (ABCMeta, ...) working for the subclass.
    sub = type(cls)(cls.__name__, (cls,), ns)
    return sub


def _default_reduce(cls: type) -> bool:
    return (
        getattr(cls, "__reduce_ex__", None) is object.__reduce_ex__
        and getattr(cls, "__reduce__", None) is object.__reduce__
    )


@dataclass
class PatchRecord:
    """What ``patch_class_in_place`` changed on one class, to put it back exactly."""

    cls: type
    label: str
    saved: dict[str, Any] = field(default_factory=dict)  # attribute -> previous __dict__ entry or _ABSENT
    undone: bool = False

    @property
    def methods(self) -> list[str]:
        return [n for n in self.saved if n != "__cache_key__"]

    def undo(self) -> None:
        """Restore every attribute this patch set (idempotent)."""
        if self.undone:
            return
        for name, previous in self.saved.items():
            if previous is _ABSENT:
                if name in self.cls.__dict__:
                    delattr(self.cls, name)
            else:
                setattr(self.cls, name, previous)
        self.undone = True


@dataclass
class FunctionPatch:
    """A module-level function replaced in its module by its cached wrapper; ``undo()`` puts it back."""

    module: Any
    name: str
    original: Any
    label: str
    undone: bool = False

    @property
    def methods(self) -> list[str]:
        return [self.name]

    def undo(self) -> None:
        if not self.undone:
            setattr(self.module, self.name, self.original)
        self.undone = True


def cache_function_in_place(
    target: str, function: Any, settings: MethodSettings, *, label: str, cache: Any = None
) -> tuple[Any, FunctionPatch]:
    """Replace a module-level function in its module with ``cached(...)(function)``.

    Callers that look it up through the module (``mod.fn()``, or ``from mod import fn`` run after this)
    get the cache; a ``from mod import fn`` done earlier holds the original (a function object can't be
    changed in place as a class can), so call ``enable()`` before the worker's imports. The namespace
    defaults to the function's name; the key is the one ``@cached`` makes, so ``python -m infra warm``
    fills exactly these entries."""
    import sys

    from infra.cache import cached

    module_name, _, name = target.partition(":")
    module = sys.modules[module_name]
    record = FunctionPatch(module=module, name=name, original=getattr(module, name), label=label)
    if callable(getattr(function, "cache_key", None)):  # already @cached: caching it twice gains nothing
        return function, record
    wrapper = cached(
        namespace=settings.namespace or name,
        ttl=settings.ttl,
        version=settings.version,
        cache=cache,
    )(function)
    setattr(module, name, wrapper)
    return wrapper, record


def patch_class_in_place(
    cls: type,
    items: Sequence[tuple[MethodPlan, MethodSettings]],
    *,
    label: str,
    cache: Any = None,
    timing: bool | None = None,
) -> PatchRecord:
    """Set the cached methods on ``cls`` itself; every name already seen by other modules sees them too."""
    timing = _timing(timing)
    record = PatchRecord(cls=cls, label=label)
    built = [
        (plan, build_method(cls, plan, settings, cache=cache, timing=timing)) for plan, settings in items
    ]
    for plan, attr in built:
        record.saved[plan.name] = cls.__dict__.get(plan.name, _ABSENT)
        setattr(cls, plan.name, attr)
    return record


def group_settings(
    plans: list[MethodPlan], settings: MethodSettings
) -> list[tuple[MethodPlan, MethodSettings]]:
    return [(p, settings) for p in plans]
