"""A module whose import has a visible side effect: it writes ``$SIDE_EFFECT_MARKER``. A cache read must
import it only when the user trusts it (``cache.trusted_modules``) or the payload is signed."""

from __future__ import annotations

import dataclasses
import os

_marker = os.environ.get("SIDE_EFFECT_MARKER")
if _marker:
    with open(_marker, "a") as f:
        f.write("imported\n")


@dataclasses.dataclass
class Secretive:
    payload: str
