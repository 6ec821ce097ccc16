"""``enable_caching_for_worker()``'s result: the ``wrap`` classes (and functions' cached wrappers) by name,
and typed by the object (``get_class(C) -> type[C]``, ``get_function(f) -> f``'s type).

The classes are cached in place, so a worker needs none of this to get the cache; it is for a worker that
wants to check a class is cached, or that still has seed 004's ``HybridScorer = cached_classes[...]`` line.
With the layer off nothing here raises for what the worker holds; only a lookup by name of an entry that
didn't import has nothing to return, and its ``KeyError`` says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias, TypeVar, cast

__all__ = ["Wrapped", "WrappedClasses"]

#: What ``cached_classes["Name"]`` holds: a ``wrap`` class (the class itself, cached in place), or for a
#: function target its cached wrapper (the original with the layer off).
Wrapped: TypeAlias = "type | Callable[..., object]"

_T = TypeVar("_T")
_F = TypeVar("_F", bound="Callable[..., object]")


class WrappedClasses(dict[str, Wrapped]):
    """``enable_caching_for_worker()``'s result: class name → class (cached in place, or untouched when the
    layer is off), and for a function target, function name → its cached wrapper (or the original). Full
    targets work too: ``classes["pkg.module:Class"]``, needed when two wrapped classes share a name.

    Typed access, by the object rather than its name: ``get_class(HybridScorer)`` is ``HybridScorer`` itself
    (typed ``type[HybridScorer]``), ``get_function(fn)`` the function's cached wrapper (typed as ``fn``).
    With the layer off both hand back what they are given: nothing is cached, nothing raises."""

    def __init__(
        self,
        by_name: dict[str, Wrapped],
        by_target: dict[str, Wrapped],
        ambiguous: dict[str, list[str]],
        *,
        source: str = "built-in defaults",
        layer_off: str | None = None,
        unresolved: dict[str, list[str]] | None = None,
        wrappers: list[tuple[Callable[..., object], Callable[..., object]]] | None = None,
    ):
        super().__init__(by_name)
        self.by_target = dict(by_target)
        self._ambiguous = ambiguous
        self.source = source
        #: why the layer is off (the switch that did it), or None when it caches
        self.layer_off = layer_off
        self._unresolved = dict(unresolved or {})  # name or target -> the warnings of the entries naming it
        self._wrappers = list(wrappers or ())  # (original function, its cached wrapper)

    def __missing__(self, key: str) -> Wrapped:
        if key in self.by_target:
            return self.by_target[key]
        if key in self._ambiguous:
            raise KeyError(f"{key!r} names more than one wrapped class; use one of {self._ambiguous[key]}")
        known = self._listing()
        if key in self._unresolved:  # only with the layer off: with it on, enable() raised WrapError
            message = (
                f"{key!r}: its 'wrap' entry did not import, so there is no class to hand back "
                f"({'; '.join(self._unresolved[key])}) {known}"
            )
        else:
            message = f"{key!r} is not wrapped by the 'wrap' list of {self.source} {known}"
        if self.layer_off is not None:
            message += (
                f". perf-infra is off ({self.layer_off}), so nothing is cached; and this line isn't needed "
                f"on or off, as classes are cached in place: drop `... = cached_classes[{key!r}]` and use "
                "the class the worker imports"
            )
        raise KeyError(message)

    def get_class(self, cls: type[_T]) -> type[_T]:
        """``cls`` itself, checked to be a class the ``wrap`` list caches (typed as the argument).

        With the layer on, a ``KeyError`` when ``cls`` is not that class: not listed, or listed under another
        module path (the worker imported a second copy of the module, which the cache doesn't reach). With
        the layer off, ``cls`` untouched, whatever the list says: nothing is cached, nothing raises."""
        if self.layer_off is not None or any(c is cls for c in self.by_target.values()):
            return cls
        name = f"{cls.__module__}:{cls.__qualname__}"
        same = [
            t for t, c in self.by_target.items() if isinstance(c, type) and c.__qualname__ == cls.__qualname__
        ]
        hint = (
            f"; {', '.join(same)} is wrapped, a different class object of that name: the worker reaches "
            f"{cls.__qualname__} through another module path, which the cache doesn't see"
            if same
            else ""
        )
        raise KeyError(
            f"{name} is not cached: the 'wrap' list of {self.source} doesn't name it{hint} {self._listing()}"
        )

    def get_function(self, fn: _F) -> _F:
        """A ``wrap`` function's cached wrapper, typed as ``fn`` (the module attribute was replaced by it;
        code that did ``from mod import fn`` before ``enable()`` holds the original). ``fn`` may be the
        original or the wrapper. With the layer on, a ``KeyError`` when ``wrap`` doesn't name it; with the
        layer off, ``fn`` untouched."""
        if self.layer_off is not None:
            return fn
        for original, wrapper in self._wrappers:
            if fn is original or fn is wrapper:
                return cast("_F", wrapper)
        name = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', fn)}"
        raise KeyError(
            f"{name} is not cached: the 'wrap' list of {self.source} doesn't name it {self._listing()}"
        )

    def _listing(self) -> str:
        return f"(wrapped: {', '.join(sorted({*self, *self.by_target})) or 'none'})"
