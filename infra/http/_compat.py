"""asyncio.timeout_at on 3.11+, async_timeout (an aiohttp dependency) on 3.10."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from asyncio import timeout_at
else:  # pragma: no cover - 3.10 only
    from async_timeout import timeout_at

__all__ = ["timeout_at"]
