"""The codec's exceptions: a value it can't store, a payload it can't trust or read, a type it may not
resolve. (Their own module: the codec and the record-type registry both raise them.)"""

from __future__ import annotations

__all__ = ["DecodeError", "EncodeError", "UnresolvedTypeError"]


class EncodeError(TypeError):
    """The value can't be stored by this namespace's codec (it is returned uncached, never lost)."""


class DecodeError(ValueError):
    """A stored payload can't be trusted or read: bad signature, unknown type, corrupt bytes."""


class UnresolvedTypeError(DecodeError):
    """A stored value names a type this process may not resolve (see ``infra.cache.record_types``)."""

    def __init__(self, tname: str) -> None:
        self.type_name = tname
        super().__init__(
            f"cached value is a {tname}, which is not registered and may not be resolved here: no such "
            "dataclass, pydantic model, enum or NamedTuple in an already imported module, its module is "
            "not under cache.trusted_modules and the payload is not signed; nothing was imported, counted "
            "as a miss (import its module first, or add its package to cache.trusted_modules)"
        )
