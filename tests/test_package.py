"""The package itself: a lean, lazy import and a curated public surface."""

from __future__ import annotations

import json
import subprocess
import sys

import infra

HEAVY = ["aiohttp", "httpx", "ollama", "torch", "asyncpg", "redis", "numpy", "websockets"]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_import_infra_loads_no_heavy_dependency() -> None:
    loaded = _modules_after("import infra, infra.config, infra.metrics, infra.errors")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_import_infra_works_without_any_extra() -> None:
    """Block every optional dependency at import; the core still loads and reads its config."""
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {HEAVY!r}: raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import infra\n"
        "cfg = infra.load_config()\n"
        "infra.get_metrics()\n"
        "assert cfg.cache.backend\n"
    )
    _modules_after(blocker)


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert infra.__all__ == sorted(infra.__all__)
    assert set(infra.__all__) == {*infra._EXPORTS, "__version__"}
    for name in infra.__all__:
        assert getattr(infra, name) is not None, name
    assert set(dir(infra)) >= set(infra.__all__)


def test_unknown_attribute_is_an_attribute_error() -> None:
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        infra.nope  # noqa: B018


def test_cli_runs_as_module_and_reports_bad_config_in_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.json"
    bad.write_text('{"metrics": {"port": 70000}, "cache": {"default_ttl": -5}}')
    run = subprocess.run(
        [sys.executable, "-m", "infra", "config", "show", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert (
        run.stderr.count("\n") == 1
        and "metrics.port: expected a port number 0-65535, got 70000" in run.stderr
    )
    check = subprocess.run(
        [sys.executable, "-m", "infra", "--json", "config", "check", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 2
    assert len(json.loads(check.stdout)["problems"]) == 2


def test_the_redis_extra_brings_the_c_reply_parser() -> None:
    """``perf-infra[redis]`` installs hiredis, which redis-py picks up by itself; CI must measure and test
    the Redis backend with it (a hit costs ~4 µs more without), not silently with the pure-Python parser."""
    import redis.utils

    assert redis.utils.HIREDIS_AVAILABLE
