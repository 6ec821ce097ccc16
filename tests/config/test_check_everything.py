"""``config check`` and ``doctor`` in seed 004's layout: targets import as the worker imports them, and
every problem (schema and wrap targets) is reported in one run.

On main: run from the project folder, ``config check`` said ``no module named 'src'`` for a worker whose
``src`` package lives in ``enrichment-worker/``; wrap problems appeared only once the schema errors were
fixed; ``doctor`` stopped at a config failure without checking the cache, Ollama or the port.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

SCORER = "class Scorer:\n    def score(self, text):\n        return len(text)\n"


def _project(tmp_path: Path, config: dict[str, Any]) -> Path:
    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    modules = project / "enrichment-worker" / "src" / "modules"
    modules.mkdir(parents=True)
    for pkg in (modules.parent, modules):
        (pkg / "__init__.py").write_text("")
    (modules / "scorer.py").write_text(SCORER)
    (project / "config" / "perf_config.json").write_text(json.dumps(config))
    return project


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERF_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "infra", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


GOOD = {"wrap": [{"target": "src.modules.scorer:Scorer", "methods": ["score"]}]}


def test_check_from_the_project_folder_imports_targets_as_the_worker_does(tmp_path: Path) -> None:
    project = _project(tmp_path, GOOD)
    for cwd in (project, project / "enrichment-worker"):
        result = _cli(cwd, "config", "check")
        assert result.returncode == 0, result.stderr
        assert ": ok, layer enabled" in result.stdout


def test_schema_and_wrap_problems_are_reported_together(tmp_path: Path) -> None:
    bad = {
        "cache": {"backnd": "sqlite"},
        "wrap": [
            {"target": "src.modules.scorer:Scorer", "methods": ["scor"]},
            {"target": "src.modules.scorer:Scorer", "methods": ["score"], "ttl": "soon"},
        ],
    }
    project = _project(tmp_path, bad)
    result = _cli(project, "--json", "config", "check")
    assert result.returncode == 2
    problems = json.loads(result.stdout)["problems"]
    assert any(p.startswith("cache.backnd: unknown key") for p in problems), problems
    assert any(p.startswith("wrap[1].ttl:") for p in problems), problems
    assert any(p.startswith("wrap[0].methods[0]:") and "'score'" in p for p in problems), problems
    assert len(problems) == 3, problems


def test_doctor_goes_on_after_a_config_failure(tmp_path: Path) -> None:
    project = _project(tmp_path, {"cache": {"backnd": "sqlite"}, "metrics": {"port": 0}})
    result = _cli(project, "--json", "doctor")
    assert result.returncode == 1
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["config"]["status"] == "FAIL"
    assert {"cache directory", "ollama", "metrics port", "wrap"} <= set(checks), checks
