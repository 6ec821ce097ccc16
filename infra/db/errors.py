"""The DB part's exception, defined in the shared tree (``infra.errors``) and re-exported here."""

from infra.errors import DatabaseConnectError

__all__ = ["DatabaseConnectError"]
