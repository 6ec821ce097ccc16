"""create_pool / fetch_concurrently against the real PostgreSQL on 127.0.0.1:5432."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from infra.db import DatabaseConnectError, DbConfig, Query, StatementTimer, create_pool, fetch_concurrently
from infra.errors import ConfigError

pytestmark = pytest.mark.services

SETTINGS = DbConfig(min_size=1, max_size=4, command_timeout=10)

# Each row: which backend ran it, and the server's clock when the query started and ended.
SLEEP_SQL = (
    "SELECT pg_backend_pid() AS pid, clock_timestamp() AS started, pg_sleep($1), clock_timestamp() AS ended"
)


@pytest.fixture
async def pool(postgres_dsn: str) -> AsyncIterator[Any]:
    p = await create_pool(postgres_dsn, settings=SETTINGS, timer=StatementTimer())
    yield p
    await p.close()


async def test_pool_uses_the_given_settings_and_server_settings(postgres_dsn: str) -> None:
    p = await create_pool(
        postgres_dsn, settings=SETTINGS, max_size=3, server_settings={"application_name": "perf-infra-test"}
    )
    try:
        assert p.get_max_size() == 3 and p.get_min_size() == 1
        assert await p.fetchval("SELECT current_setting('application_name')") == "perf-infra-test"
    finally:
        await p.close()


async def test_concurrent_sleeps_overlap_on_separate_connections(pool: Any) -> None:
    """Each query runs on its own backend and all of them are asleep at once (server clocks), so the
    wall time is the slowest query's, not the sum (asyncpg#56: one connection can't do this)."""
    rows = await fetch_concurrently(pool, [Query(SLEEP_SQL, d, method="fetchrow") for d in (0.2, 0.3, 0.25)])
    assert len({r["pid"] for r in rows}) == 3
    assert max(r["started"] for r in rows) < min(r["ended"] for r in rows)


async def test_results_keep_input_order_and_named_queries_return_a_dict(pool: Any) -> None:
    out = await fetch_concurrently(
        pool, ["SELECT 1 AS x", ("SELECT $1::int AS x", 2), Query("SELECT 3", method="fetchval")]
    )
    assert [out[0][0]["x"], out[1][0]["x"], out[2]] == [1, 2, 3]
    named = await fetch_concurrently(
        pool, {"memories": ("SELECT $1::text AS t", "m"), "history": Query("SELECT 'h'", method="fetchval")}
    )
    assert list(named) == ["memories", "history"]
    assert named["memories"][0]["t"] == "m" and named["history"] == "h"


async def test_a_failing_query_cancels_the_others_or_is_captured(pool: Any) -> None:
    import asyncpg

    queries = [Query("SELECT pg_sleep(5)"), Query("SELECT 1/0")]
    with pytest.raises(asyncpg.DivisionByZeroError):
        await fetch_concurrently(pool, queries)
    out = await fetch_concurrently(
        pool, [Query("SELECT 1", method="fetchval"), Query("SELECT 1/0")], on_error="capture"
    )
    assert out[0] == 1 and isinstance(out[1], asyncpg.DivisionByZeroError)
    # The pool is healthy afterwards: the cancelled sleep's connection was reset or replaced.
    assert await pool.fetchval("SELECT 42") == 42


async def test_statement_metrics_recorded_by_label_and_outcome(postgres_dsn: str) -> None:
    from infra.metrics import get_metrics

    timer = StatementTimer()
    p = await create_pool(postgres_dsn, settings=SETTINGS, timer=timer)
    try:
        await fetch_concurrently(p, {"neighbours_test_label": ("SELECT $1::int", 1)}, timer=timer)
        await p.fetch(timer.name("SELECT 2", "two_test_label"))
        with pytest.raises(Exception, match="division by zero"):
            await p.fetch(timer.name("SELECT 1/0", "div_test_label"))
        await p.fetch("SELECT 'unnamed literal secret'")
        await asyncio.sleep(0)  # asyncpg calls query loggers on the next loop turn
    finally:
        await p.close()
    series = {
        (s["labels"]["statement"], s["labels"]["outcome"]): s["count"]
        for s in get_metrics().histogram_stats("infra_db_query_duration_seconds")
    }
    assert series[("neighbours_test_label", "ok")] >= 1
    assert series[("two_test_label", "ok")] >= 1
    assert series[("div_test_label", "error")] >= 1
    # Unnamed SQL gets a hashed label: no literal value ever reaches a label.
    assert not any("secret" in label for label, _ in series)
    assert timer.label_for("SELECT 'unnamed literal secret'").startswith("select_")


def test_statement_labels_are_bounded() -> None:
    timer = StatementTimer(max_labels=3)
    labels = {timer.label_for(f"SELECT {i}") for i in range(10)}
    assert len(labels) == 4 and "other" in labels
    assert timer.label_for("SELECT   0") == timer.label_for("SELECT 0")  # whitespace-normalised


async def test_refused_connection_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(DatabaseConnectError, match=r"127\.0\.0\.1:1/test: connection refused") as info:
        await create_pool("postgresql://postgres:hunter2@127.0.0.1:1/test", settings=SETTINGS)
    assert "hunter2" not in str(info.value) and isinstance(info.value.__cause__, OSError)


async def test_unknown_database_is_named(postgres_dsn: str) -> None:
    bad = postgres_dsn.rsplit("/", 1)[0] + "/no_such_db_perf_infra"
    with pytest.raises(DatabaseConnectError, match='"no_such_db_perf_infra" does not exist'):
        await create_pool(bad, settings=SETTINGS)


async def test_malformed_dsn_is_a_config_error_naming_db_dsn() -> None:
    with pytest.raises(ConfigError, match=r"db\.dsn") as info:
        await create_pool("mysql://root@127.0.0.1/x", settings=SETTINGS)
    assert "postgresql" in str(info.value)


async def test_user_init_still_runs_alongside_the_timer(postgres_dsn: str) -> None:
    seen: list[Any] = []

    async def init(conn: Any) -> None:
        seen.append(conn)

    p = await create_pool(postgres_dsn, settings=SETTINGS, init=init)
    try:
        assert await p.fetchval("SELECT 1") == 1
        assert seen
    finally:
        await p.close()


async def test_refused_connection_hides_a_password_given_as_a_query_parameter() -> None:
    """Issue 17 item 13: ``?password=`` came out in clear in the connection error."""
    with pytest.raises(DatabaseConnectError, match="connection refused") as info:
        await create_pool("postgresql://postgres@127.0.0.1:1/test?password=hunter2", settings=SETTINGS)
    assert "hunter2" not in str(info.value) and "password=***" in str(info.value)
