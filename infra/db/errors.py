"""The DB part's exception (to move into ``infra.errors`` as ``DatabaseConnectError``; see the report)."""

from __future__ import annotations

from infra.errors import PerfInfraError

__all__ = ["DatabaseConnectError"]


class DatabaseConnectError(PerfInfraError, ConnectionError):
    """``create_pool`` could not open its first connections; the message names the (redacted) DSN
    and the reason, and the asyncpg / OS exception is the ``__cause__``."""
