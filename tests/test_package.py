"""The package itself: a lean, lazy import and a curated public surface."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import infra

HEAVY = ["aiohttp", "httpx", "ollama", "torch", "asyncpg", "redis", "numpy", "websockets", "pyreqwest"]


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


FRONT_DOORS = [
    "infra",
    "infra.cache",
    "infra.http",
    "infra.integrate",
    "infra.ollama",
    "infra.server",
    "infra.testing",
]


def _type_checking_imports(package: str) -> dict[str, str]:
    """The ``if TYPE_CHECKING:`` imports of a front door (what mypy sees): name -> defining module."""
    tree = ast.parse(Path(importlib.import_module(package).__file__ or "").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    names: dict[str, str] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module, ast.unparse(node)
        for alias in node.names:
            assert alias.asname == alias.name, f"{package}: write 'import {alias.name} as {alias.name}'"
            names[alias.name] = node.module
    return names


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert infra.__all__ == sorted(infra.__all__)
    for name in infra.__all__:
        assert getattr(infra, name) is not None, name
    assert set(dir(infra)) >= set(infra.__all__)


@pytest.mark.parametrize("package", FRONT_DOORS)
def test_what_mypy_sees_is_what_the_front_door_serves(package: str) -> None:
    """Each lazy front door's TYPE_CHECKING imports name exactly its ``__all__``, as the same objects."""
    code = (
        f"import importlib, {package} as p\n"
        "assert p.__all__ == sorted(p.__all__)\n"
        f"want = {_type_checking_imports(package)!r}\n"
        "assert set(p.__all__) - {'__version__'} == set(want), set(p.__all__) ^ set(want)\n"
        "for name, mod in want.items():\n"
        "    assert getattr(p, name) is getattr(importlib.import_module(mod), name), name\n"
        "    assert name in dir(p)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # a fresh process: nothing preloaded


def test_unknown_attribute_is_an_attribute_error() -> None:
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
