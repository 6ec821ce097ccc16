"""Issue 14 item 7: wrap entries are validated where users look. ``config check`` and ``doctor`` report
unknown modules, classes and methods (with did-you-mean) and bad ttl values by JSON path; with the layer
off a bad entry is a logged warning, never a crash. ``wrap[0].ttl: 0`` was rejected ("must be a positive
duration"); since session 14 it means "never expires", as for ``@cached(ttl=0)`` and ``Cache.set(ttl=0)``,
and a negative ttl is the config's error, by JSON path."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

SCORER = textwrap.dedent("""
    class HybridScorer:
        def __init__(self, weight=1.0):
            self.weight = weight

        def score(self, text):
            return len(text) * self.weight
""")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Seed 004's layout: the worker's code under Leo/, the config in Leo/config/."""
    leo = tmp_path / "Leo"
    (leo / "config").mkdir(parents=True)
    (leo / "scoring").mkdir()
    (leo / "scoring" / "__init__.py").write_text("")
    (leo / "scoring" / "hybrid_scorer.py").write_text(SCORER)
    return leo


def _write(project: Path, wrap: list[dict[str, Any]], **top: Any) -> Path:
    path = project / "config" / "perf_config.json"
    data = {"cache": {"path": str(project / "cache.db")}, "torch": {"enabled": False}, "wrap": wrap, **top}
    path.write_text(json.dumps(data))
    return path


def _cli(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERF_") and k != "OLLAMA_HOST"}
    env["PYTHONPATH"] = str(REPO)
    env["OLLAMA_HOST"] = "http://127.0.0.1:9"
    return subprocess.run(
        [sys.executable, "-m", "infra", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


BAD = [
    {"target": "scoring.hybrid_scorer:HybridScorer", "methods": ["scor"]},
    {"target": "scoring.hybrid_scorr:HybridScorer", "methods": ["score"]},
    {"target": "scoring.hybrid_scorer:HybridScorr", "methods": ["score"]},
    {"target": "scoring.hybrid_scorer:HybridScorer", "methods": ["__init__"]},
]


def test_config_check_reports_every_wrap_problem_by_json_path(project: Path) -> None:
    """main: `config check` said ok about all of these."""
    path = _write(project, BAD)
    run = _cli(project, "config", "check")
    assert run.returncode == 2, run.stdout
    out = run.stderr
    assert str(path) in out
    assert (
        "wrap[0].methods[0]: scoring.hybrid_scorer:HybridScorer: no method 'scor' (did you mean 'score'?)"
        in out
    )
    assert "wrap[1].target: module 'scoring.hybrid_scorr' does not import" in out
    assert "did you mean 'hybrid_scorer'?" in out
    assert "wrap[2].target: " in out and "did you mean 'HybridScorer'?" in out
    assert "wrap[3].methods[0]: " in out and "special method" in out


def test_config_check_reports_a_negative_ttl_and_takes_zero(project: Path) -> None:
    entry = {"target": "scoring.hybrid_scorer:HybridScorer", "methods": ["score"]}
    _write(project, [{**entry, "ttl": -1}, {**entry, "namespace": "other", "ttl": 0}])
    run = _cli(project, "config", "check")
    assert run.returncode == 2, run.stdout
    assert "wrap[0].ttl: expected a duration of 0 or more, got -1" in run.stderr
    assert "wrap[1]" not in run.stderr


def test_config_check_ok_for_a_good_wrap_list(project: Path) -> None:
    _write(project, [{"target": "scoring.hybrid_scorer:HybridScorer", "methods": ["score"], "ttl": "1h"}])
    run = _cli(project, "config", "check", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["ok"] is True


def test_doctor_fails_a_bad_wrap_list_with_the_layer_on_and_warns_with_it_off(project: Path) -> None:
    _write(project, BAD[:1])
    checks = {c["check"]: c for c in json.loads(_cli(project, "doctor", "--json").stdout)["checks"]}
    assert checks["wrap"]["status"] == "FAIL" and "wrap[0].methods[0]" in checks["wrap"]["detail"]
    assert str(project / "config" / "perf_config.json") in checks["config"]["detail"]
    _write(project, BAD[:1], enabled=False)
    run = _cli(project, "doctor", "--json")
    checks = {c["check"]: c for c in json.loads(run.stdout)["checks"]}
    assert checks["wrap"]["status"] == "warn"


def test_layer_off_a_bad_entry_is_a_logged_warning_never_a_crash(
    project: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """main: `{"enabled": false, "wrap": [... "methods": ["scor"]]}` raised WrapError at startup."""
    from infra.config import load_config
    from infra.integrate import enable_caching_for_worker

    monkeypatch.syspath_prepend(str(project))
    path = _write(project, [BAD[0]], enabled=False)
    try:
        with caplog.at_level(logging.WARNING, logger="infra.integrate"):
            classes = enable_caching_for_worker(load_config(path, use_env=False))
        from scoring.hybrid_scorer import HybridScorer

        assert classes["HybridScorer"] is HybridScorer and "score" in HybridScorer.__dict__
        assert HybridScorer(weight=2.0).score("ab") == 4.0
        assert "wrap[0].methods[0]" in caplog.text
        assert str(path) in caplog.text
    finally:
        for name in [m for m in sys.modules if m.startswith("scoring")]:
            sys.modules.pop(name)


def test_layer_on_ttl_zero_caches_without_expiry(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Was a WrapError ("must be a positive duration"): 0 now means what @cached(ttl=0) means."""
    from infra.config import load_config
    from infra.integrate import enable_caching_for_worker

    monkeypatch.syspath_prepend(str(project))
    path = _write(project, [{"target": "scoring.hybrid_scorer:HybridScorer", "methods": ["score"], "ttl": 0}])
    try:
        classes = enable_caching_for_worker(load_config(path, use_env=False))
        scorer = classes["HybridScorer"]
        assert "score" in scorer.__dict__ and scorer(weight=2.0).score("ab") == 4.0
    finally:
        for name in [m for m in sys.modules if m.startswith("scoring")]:
            sys.modules.pop(name)
