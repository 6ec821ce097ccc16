"""Which store a ``Cache`` uses: the one its settings name, or the one it is given, if it may be trusted.

A shared store (PostgreSQL, Redis) is written by other clients too, so its rows are trusted only when
signed (issue 17 item 11); without a signing key nothing can be verified (nor signed) and the store is not
used at all: the cache runs with its L1 only, and says why (``Cache.backend_error``).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable

from infra.cache.backends.base import CacheBackend
from infra.config.sections.cache import CacheConfig

__all__ = ["make_backend", "open_backend"]

log = logging.getLogger("infra.cache")


def make_backend(config: CacheConfig) -> CacheBackend | None:
    """The L2 backend the settings name (None: L1 only). Network backends load lazily (issue 8)."""
    if config.backend == "memory":
        return None
    if config.backend == "sqlite":
        from infra.cache.backends.sqlite.store import SQLiteBackend

        return SQLiteBackend(
            config.path,
            max_bytes=config.max_bytes,
            namespace_max_bytes={k: v.max_bytes for k, v in config.namespaces.items()},
            budget=config.store_budget,
        )
    try:
        mod = importlib.import_module(f"infra.cache.backends.{config.backend}")
    except ImportError as exc:
        raise ValueError(f"cache backend {config.backend!r} is not available: {exc}") from exc
    factory: Callable[[CacheConfig], CacheBackend] = mod.from_settings
    return factory(config)


def open_backend(
    config: CacheConfig, given: CacheBackend | None, *, build: bool, signed: bool
) -> tuple[CacheBackend | None, str | None]:
    """``(store, None)``, or ``(None, why)`` when there is none to use. ``build``: make the one ``config``
    names (``given`` is ignored); ``signed``: a signing key is set (a shared store needs one)."""
    if build:
        try:
            given = make_backend(config)
        except Exception as exc:
            log.error(
                "cache backend %r unavailable (%s); running with the in-process L1 only", config.backend, exc
            )
            return None, str(exc)
    if given is None or not given.shared or signed:
        return given, None
    why = (
        f"cache backend {given.name!r} is shared but {config.signing_key_env} is not set: "
        "its rows can't be verified, so it is not used (set the key)"
    )
    log.error("%s; running with the in-process L1 only", why)
    if build:
        with contextlib.suppress(Exception):
            given.close()
    return None, why
