"""The db section (``DbConfig``) as create_pool reads it: seed 003 workload presets, validation, no
password in repr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.db import WORKLOADS, DbConfig
from infra.errors import ConfigError


def test_the_shipped_db_section_gives_the_pool_its_defaults() -> None:
    from infra.config import load_config

    db = load_config().db
    assert (db.min_size, db.max_size) == (2, 10)
    kwargs = db.pool_kwargs()
    assert kwargs["max_inactive_connection_lifetime"] == 300.0
    assert kwargs["command_timeout"] == 30.0 and kwargs["statement_cache_size"] == 100
    assert kwargs["min_size"] == 2 and kwargs["server_settings"] is None


@pytest.mark.parametrize(
    ("workload", "sizes"), [("light", (1, 5, 600.0)), ("medium", (2, 10, 300.0)), ("heavy", (5, 20, 120.0))]
)
def test_workload_presets_follow_seed_003(workload: str, sizes: tuple[int, int, float]) -> None:
    s = DbConfig().for_workload(workload)
    assert (s.min_size, s.max_size, s.max_inactive_connection_lifetime) == sizes == WORKLOADS[workload]


def test_unknown_workload_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="heavy"):
        DbConfig().for_workload("huge")


def test_every_invalid_setting_is_reported_together() -> None:
    with pytest.raises(ValueError) as info:  # refused where it is built, as the loader refuses a file
        DbConfig(min_size=5, max_size=2, statement_cache_size=-1, command_timeout=0)
    text = str(info.value)
    assert "db.min_size: must not exceed db.max_size (2), got 5" in text
    assert "statement_cache_size" in text and "command_timeout" in text


def test_no_command_timeout_is_allowed() -> None:
    assert DbConfig(command_timeout=None).pool_kwargs()["command_timeout"] is None


def test_repr_hides_the_password_and_env_supplies_the_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    s = DbConfig(dsn="postgresql://app:hunter2@db:5432/prod", server_settings={"application_name": "voice"})
    assert "hunter2" not in repr(s) and "***" in repr(s)
    assert s.pool_kwargs()["server_settings"] == {"application_name": "voice"}
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@h/db")
    assert DbConfig().resolved_dsn() == "postgresql://x@h/db"
    assert s.resolved_dsn() == "postgresql://app:hunter2@db:5432/prod"


async def test_create_pool_reports_a_bad_db_section_instead_of_using_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file's problem reaches the caller by its JSON path, before any connection is tried."""
    from infra.config import reset_config
    from infra.db import create_pool

    path = tmp_path / "perf_config.json"
    path.write_text(json.dumps({"db": {"min_size": 8, "max_size": 3}}), encoding="utf-8")
    monkeypatch.setenv("PERF_CONFIG", str(path))
    reset_config()
    try:
        with pytest.raises(ConfigError, match=r"db\.min_size: must not exceed db\.max_size \(3\), got 8"):
            await create_pool("postgresql://nobody@127.0.0.1:1/none")
    finally:
        reset_config()


def test_a_bad_db_section_built_in_code_gets_the_loaders_error() -> None:
    """A config built in code gets the same error the loader gives a file, where it is built."""
    from infra.config import PerfConfig

    with pytest.raises(ConfigError, match=r"db\.command_timeout"):
        PerfConfig(db=DbConfig(min_size=1, max_size=4, command_timeout=0))
