"""``MISSING``: the sentinel ``Cache.get`` returns on a miss (``None`` is a cacheable value)."""

from __future__ import annotations

import enum
from typing import Final, Literal

__all__ = ["MISSING", "MissingType"]


class MissingType(enum.Enum):
    """Type of ``MISSING``; an enum so it survives copy/pickle as the same singleton and type-checks."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"

    __str__ = __repr__

    def __bool__(self) -> Literal[False]:
        return False


MISSING: Final = MissingType.MISSING
