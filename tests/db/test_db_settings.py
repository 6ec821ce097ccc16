"""DbSettings: the db section of perf_config, seed 003 workload presets, validation, no password in repr."""

from __future__ import annotations

import pytest

from infra.db import WORKLOADS, DbSettings


def test_from_config_mirrors_the_shipped_db_section() -> None:
    from infra.config import load_config

    db = load_config().db
    s = DbSettings.from_config(db)
    assert (s.min_size, s.max_size) == (db.min_size, db.max_size) == (2, 10)
    assert s.max_inactive_connection_lifetime == 300.0
    assert s.command_timeout == 30.0 and s.statement_cache_size == 100
    kwargs = s.pool_kwargs()
    assert kwargs["min_size"] == 2 and kwargs["server_settings"] is None


@pytest.mark.parametrize(
    ("workload", "sizes"), [("light", (1, 5, 600.0)), ("medium", (2, 10, 300.0)), ("heavy", (5, 20, 120.0))]
)
def test_workload_presets_follow_seed_003(workload: str, sizes: tuple[int, int, float]) -> None:
    s = DbSettings().for_workload(workload)
    assert (s.min_size, s.max_size, s.max_inactive_connection_lifetime) == sizes == WORKLOADS[workload]


def test_unknown_workload_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="heavy"):
        DbSettings().for_workload("huge")


def test_every_invalid_setting_is_reported_together() -> None:
    with pytest.raises(ValueError) as info:
        DbSettings(min_size=5, max_size=2, statement_cache_size=-1, command_timeout=0)
    text = str(info.value)
    assert "min_size (5) must not exceed max_size (2)" in text
    assert "statement_cache_size" in text and "command_timeout" in text


def test_replace_rejects_unknown_fields_by_name() -> None:
    with pytest.raises(TypeError, match="max_sise"):
        DbSettings().replace(max_sise=3)


def test_repr_hides_the_password_and_env_supplies_the_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    s = DbSettings(dsn="postgresql://app:hunter2@db:5432/prod", server_settings={"application_name": "voice"})
    assert "hunter2" not in repr(s) and "***" in repr(s)
    assert s.pool_kwargs()["server_settings"] == {"application_name": "voice"}
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@h/db")
    assert DbSettings().resolved_dsn() == "postgresql://x@h/db"
    assert s.resolved_dsn() == "postgresql://app:hunter2@db:5432/prod"
