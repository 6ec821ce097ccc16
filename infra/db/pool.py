"""``create_pool``: an asyncpg pool with perf_config's settings and per-statement timing attached."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from infra.config._switch import metrics_enabled
from infra.config.sections.runtime import DbConfig
from infra.db.errors import DatabaseConnectError
from infra.db.timing import StatementTimer
from infra.errors import ConfigError, ConfigProblem

if TYPE_CHECKING:  # asyncpg loads on the first create_pool call
    import asyncpg

__all__ = ["create_pool", "default_timer"]

_default_timer: StatementTimer | None = None


def default_timer() -> StatementTimer:
    """The process-wide ``StatementTimer`` pools use unless given one."""
    global _default_timer
    if _default_timer is None:
        _default_timer = StatementTimer()
    return _default_timer


def _settings_from_config() -> DbConfig:
    """The process config's db section. The loader reports a section asyncpg would refuse as a
    ``ConfigError`` at ``db.<field>``; a config built in code (``set_config``) gets the same error here,
    never a silent fall-back to the built-in settings."""
    from infra.config import get_config

    config = get_config(strict=True)  # create_pool is asked for explicitly: an unusable file raises
    problems = config.db.problems()
    if problems:
        where = [ConfigProblem(f"db.{field}", message) for field, message in problems]
        raise ConfigError(where, source=config.source)
    return config.db


def _where(dsn: str | None) -> str:
    if dsn is None:
        return "PostgreSQL (DSN from libpq's PG* environment variables)"
    from infra.config import redact_url

    return f"PostgreSQL at {redact_url(dsn)}"


def _settings(
    dsn: str | None, settings: DbConfig | None, workload: str | None, overrides: dict[str, object]
) -> DbConfig:
    """The pool's section: ``settings`` (else the config's), then ``workload``, then the ``DbConfig``
    fields among ``overrides`` (taken out of it; the rest go to asyncpg), then ``dsn``."""
    base = settings if settings is not None else _settings_from_config()
    if workload is not None:
        base = base.for_workload(workload)
    fields = {f.name for f in dataclasses.fields(DbConfig) if f.name != "dsn"}
    # their values are checked by DbConfig.problems() (pool_kwargs)
    mine: dict[str, Any] = {k: overrides.pop(k) for k in list(overrides) if k in fields}
    if dsn is not None:
        mine["dsn"] = dsn
    return dataclasses.replace(base, **mine) if mine else base


async def create_pool(
    dsn: str | None = None,
    *,
    settings: DbConfig | None = None,
    workload: str | None = None,
    timer: StatementTimer | None = None,
    timing: bool = True,
    connect_timeout: float = 10.0,
    init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    **overrides: object,
) -> asyncpg.Pool:
    """Create and open an ``asyncpg.Pool`` tuned from perf_config's ``db`` section.

    Precedence: ``overrides`` (any ``DbConfig`` field, e.g. ``max_size=20``) over ``workload``
    (seed 003's ``"light"``/``"medium"``/``"heavy"`` sizes) over ``settings`` (default: from
    ``infra.config.get_config().db``). The DSN is ``dsn``, else the settings', else
    ``$DATABASE_URL``. ``init`` runs on each new connection (after the timer is attached). Other
    keywords (``setup``, ``record_class``, ...) go to ``asyncpg.create_pool`` unchanged.

    Each connection gets a ``StatementTimer`` query logger (``timing=False`` to skip) that records
    ``infra_db_query_duration_seconds{statement,outcome}``; with ``metrics.enabled: false`` and no
    ``timer`` given, none is attached (nothing would be recorded).

    Raises ``ConfigError`` for a malformed DSN and ``DatabaseConnectError`` when the first
    connections can't be opened (refused, unknown host, unknown database, authentication); both
    name the DSN with its password redacted. With ``min_size=0`` nothing connects until first use.
    """
    try:
        import asyncpg
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("infra.db needs asyncpg: pip install 'perf-infra[postgres]'") from exc

    base = _settings(dsn, settings, workload, overrides)
    target = base.resolved_dsn()

    kwargs: dict[str, object] = dict(base.pool_kwargs())
    if timing and (timer is not None or metrics_enabled()):
        t = timer if timer is not None else default_timer()
        user_init = init

        async def timed_init(conn: asyncpg.Connection) -> None:
            t.attach(conn)
            if user_init is not None:
                await user_init(conn)

        kwargs["init"] = timed_init
    elif init is not None:
        kwargs["init"] = init
    kwargs.update(overrides)
    kwargs.setdefault("timeout", connect_timeout)

    where = _where(target)
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(target, **kwargs)
        return pool
    except asyncpg.ClientConfigurationError as exc:
        raise ConfigError([ConfigProblem("db.dsn", f"{where}: {exc}")]) from exc
    except asyncpg.InvalidCatalogNameError as exc:
        raise DatabaseConnectError(
            f"cannot connect to {where}: {exc} (create it, or fix the DSN's database)"
        ) from exc
    except asyncpg.InvalidAuthorizationSpecificationError as exc:
        raise DatabaseConnectError(f"cannot connect to {where}: authentication failed: {exc}") from exc
    except asyncpg.InvalidPasswordError as exc:
        raise DatabaseConnectError(f"cannot connect to {where}: wrong password: {exc}") from exc
    except socket.gaierror as exc:
        raise DatabaseConnectError(f"cannot connect to {where}: host name not found ({exc})") from exc
    except ConnectionRefusedError as exc:
        raise DatabaseConnectError(
            f"cannot connect to {where}: connection refused (is PostgreSQL running?)"
        ) from exc
    except (asyncio.TimeoutError, TimeoutError) as exc:
        raise DatabaseConnectError(f"cannot connect to {where}: no answer within {connect_timeout}s") from exc
    except OSError as exc:
        raise DatabaseConnectError(f"cannot connect to {where}: {exc}") from exc
    except asyncpg.PostgresError as exc:
        raise DatabaseConnectError(f"cannot connect to {where}: {type(exc).__name__}: {exc}") from exc
