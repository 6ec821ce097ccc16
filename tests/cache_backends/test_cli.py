"""``python -m infra cache stats|inspect|clear`` against each shared backend, chosen by perf_config."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.cache import Cache

from ._servers import RedisServer

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, **cache: Any) -> Path:
    cfg = json.loads((REPO / "config" / "perf_config.json").read_text())
    cfg["$schema"] = str(REPO / "config" / "perf_config.schema.json")
    cfg["cache"].update(cache)
    path = tmp_path / "perf_config.json"
    path.write_text(json.dumps(cfg))
    return path


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PERF_CACHE_SIGNING_KEY": "cli-test-key", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "infra", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture(params=["postgres", "redis"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A config naming the backend; PostgreSQL in the session's own database, Redis on our own server (the
    CLI uses the default table / key prefix, so neither may be shared with a parallel run)."""
    if request.param == "postgres":
        return write_config(tmp_path, backend="postgres", dsn=request.getfixturevalue("pg_cache_dsn"))
    server: RedisServer = request.getfixturevalue("own_redis")
    return write_config(tmp_path, backend="redis", url=server.url)


def test_cli_stats_inspect_clear_on_a_shared_backend(config: Path) -> None:
    from infra.config import load_config

    # the writer gets a budget with margin for a loaded box (a cold backend's first connect creates the
    # tables); the CLI runs with the config's default 50 ms: its housekeeping commands wait for a connect
    settings = dataclasses.replace(
        load_config(str(config)).cache,
        store_budget=1.0,
    )
    cache = Cache(settings, signing_key=b"cli-test-key")
    try:
        cache.set("api", "k1", {"a": 1})
        cache.set("inference", "k2", "hello")
    finally:
        cache.close()
    stats = cli(config, "--json", "cache", "stats")
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    assert data["total_entries"] == 2 and data["by_type"] == {"api": 1, "inference": 1}
    inspect = cli(config, "cache", "inspect", "--limit", "5")
    assert inspect.returncode == 0 and "k1" in inspect.stdout and "signed" in inspect.stdout
    assert "cli-test-key" not in inspect.stdout + stats.stdout
    cleared = cli(config, "cache", "clear", "--namespace", "api")
    assert cleared.returncode == 0, cleared.stderr
    after = json.loads(cli(config, "--json", "cache", "stats").stdout)
    assert after["by_type"] == {"inference": 1}
    assert cli(config, "cache", "clear").returncode == 0
