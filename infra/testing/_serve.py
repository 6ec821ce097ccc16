"""What the ``python -m`` entry points of the test servers share: serve until told to, then stop."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol

__all__ = ["serve_until"]


class _Stoppable(Protocol):
    def stop(self) -> None: ...


def serve_until(server: _Stoppable, wait: Callable[[], object]) -> int:
    """Block in ``wait()`` (Ctrl-C ends it quietly), then stop the started ``server``; exit status 0."""
    try:
        with contextlib.suppress(KeyboardInterrupt):
            wait()
    finally:
        server.stop()
    return 0
