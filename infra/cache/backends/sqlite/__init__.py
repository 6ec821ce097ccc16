"""The SQLite backend: one file per host, shared by its processes (the default store).

``store`` opens, reads, writes and recovers; ``schema`` holds the tables and statements; ``maint`` the
housekeeping off the hit path; ``guard`` the file-permission, lock-budget and disk-space guards.
"""

from __future__ import annotations

from infra.cache.backends.sqlite.store import SQLiteBackend

__all__ = ["SQLiteBackend"]
