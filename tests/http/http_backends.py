"""What tests read of a client's pool whichever backend carries it (aiohttp, httpx, pyreqwest)."""

from __future__ import annotations

from typing import Any


def backend_active(stats: dict[str, int]) -> int:
    """Connections the backend has handed out, whichever backend ran (``pool_stats``' own key for it)."""
    for key in ("aiohttp_acquired", "reqwest_active", "httpx_active"):
        if stats.get(key, 0) != 0:
            return stats[key]
    return 0


def pool_empty(client: Any) -> bool:
    """No slot held and no connection handed out, by any backend the client has open."""
    stats = client.pool_stats()
    return stats["in_use"] == 0 and all(stats[k] == 0 for k in stats if k != "in_use")
