"""``Closing``: the context-manager protocol of an object whose way out is ``close()``.

The HTTP client, the metrics server and the Ollama routing each close on leaving a ``with`` block; the
two protocol methods are written once here (as ``contextlib.closing`` does for a wrapped object), so a
class only says what closing means.
"""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

__all__ = ["Closing"]

_C = TypeVar("_C", bound="Closing")


class Closing:
    """Mixin: ``with obj:`` returns ``obj`` and calls ``obj.close()`` on the way out, error or not."""

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
