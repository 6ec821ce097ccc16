"""A relative ``cache.path`` in a config file resolves against the project root, not the working directory.

Seed 004's layout (``project/config/perf_config.json`` found from ``project/enrichment-worker/``): on main,
``cd enrichment-worker && python worker.py`` and ``python enrichment-worker/worker.py`` used two stores,
and ``python -m infra cache stats`` from ``project/`` read (and created) a third, empty one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infra.config import load_config, project_root

REPO = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent("""
    import sys
    from infra.cache import cached

    @cached(namespace="trial")
    def square(x):
        print("COMPUTED", x)
        return x * x

    print("RESULT", square(int(sys.argv[1])))
    from infra.cache import get_cache
    get_cache().close()
""")


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    (project / "enrichment-worker").mkdir()
    (project / "enrichment-worker" / "worker.py").write_text(WORKER)
    (project / "config" / "perf_config.json").write_text(
        json.dumps({"torch": {"enabled": False}, "metrics": {"serve": False}})
    )
    return project


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERF_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_project_root_is_the_folder_holding_config(tmp_path: Path) -> None:
    project = _project(tmp_path)
    assert project_root(project / "config" / "perf_config.json") == project.resolve()
    other = tmp_path / "elsewhere.json"
    other.write_text("{}")
    assert project_root(other) == tmp_path.resolve()


def test_relative_cache_path_resolves_against_the_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project(tmp_path)
    monkeypatch.chdir(project / "enrichment-worker")
    monkeypatch.delenv("PERF_CACHE_PATH", raising=False)
    config = load_config(project / "config" / "perf_config.json")
    assert config.cache.path == str(project.resolve() / ".perf_cache" / "cache.db")
    # the environment variable is typed in a shell: it keeps the working directory
    monkeypatch.setenv("PERF_CACHE_PATH", "here.db")
    assert load_config(project / "config" / "perf_config.json").cache.path == "here.db"


def test_built_in_defaults_keep_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PERF_CONFIG", raising=False)
    monkeypatch.delenv("PERF_CACHE_PATH", raising=False)
    assert load_config().cache.path == ".perf_cache/cache.db"


def test_worker_from_two_folders_and_the_cli_share_one_store(tmp_path: Path) -> None:
    project = _project(tmp_path)
    store = project.resolve() / ".perf_cache" / "cache.db"

    stats = _run(project, "-m", "infra", "cache", "stats")
    assert stats.returncode == 0, stats.stderr
    assert f"no cache at {store}" in stats.stdout
    missing = json.loads(_run(project, "-m", "infra", "cache", "stats", "--json").stdout)
    assert missing["path"] == str(store) and missing["exists"] is False
    assert not (project / ".perf_cache").exists(), "a read-only command created the store"

    first = _run(project / "enrichment-worker", "worker.py", "7")
    assert "COMPUTED 7" in first.stdout, first.stderr
    second = _run(project, "enrichment-worker/worker.py", "7")
    assert "RESULT 49" in second.stdout and "COMPUTED" not in second.stdout, second.stdout + second.stderr
    assert store.is_file()
    assert not (project / "enrichment-worker" / ".perf_cache").exists()

    text = _run(project, "-m", "infra", "cache", "stats")
    assert f"file:  {store} " in text.stdout, text.stdout
    as_json = json.loads(
        _run(project / "enrichment-worker", "-m", "infra", "cache", "stats", "--json").stdout
    )
    assert as_json["path"] == str(store) and as_json["exists"] is True
    assert as_json["total_entries"] == 1

    cleared = _run(project, "-m", "infra", "cache", "clear")
    assert "removed 1 entries" in cleared.stdout, cleared.stdout + cleared.stderr
    third = _run(project / "enrichment-worker", "worker.py", "7")
    assert "COMPUTED 7" in third.stdout
