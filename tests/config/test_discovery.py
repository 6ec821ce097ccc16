"""Issue 14 item 6: config discovery finds seed 004's layout from the worker's own folder.

Seed 004: ``Leo/config/perf_config.json``, ``Leo/enrichment-worker/worker.py`` inserting ``parent.parent``
into sys.path. ``cd enrichment-worker && python worker.py`` must read Leo's config (main: built-in defaults,
then ``KeyError ... (wrapped: none)``); ``$PERF_CONFIG`` and an explicit path still win; the worker can say
which file it used, and an error names it (or says "built-in defaults").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infra.config import find_config_file, load_config

REPO = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent.parent))

    from infra.enrichment_helpers import enable_caching_for_worker
    cached_classes = enable_caching_for_worker()
    HybridScorer = cached_classes["HybridScorer"]

    from infra.integrate import active_handle
    print("CONFIG", active_handle().config.source)
    print(active_handle().report())
    print("SCORE", HybridScorer(weight=10.0).score("abcd"))
""")

SCORER = textwrap.dedent("""
    class HybridScorer:
        def __init__(self, weight=1.0):
            self.weight = weight

        def score(self, text):
            return len(text) * self.weight
""")


def _leo(tmp_path: Path) -> Path:
    leo = tmp_path / "Leo"
    (leo / "config").mkdir(parents=True)
    (leo / "enrichment-worker" / "src" / "modules").mkdir(parents=True)
    for pkg in ("src", "src/modules"):
        (leo / "enrichment-worker" / pkg / "__init__.py").write_text("")
    (leo / "enrichment-worker" / "src" / "modules" / "hybrid_scorer.py").write_text(SCORER)
    (leo / "enrichment-worker" / "worker.py").write_text(WORKER)
    (leo / "config" / "perf_config.json").write_text(
        json.dumps(
            {
                "cache": {"path": str(tmp_path / "cache" / "c.db")},
                "torch": {"enabled": False},
                "metrics": {"serve": False},
                "wrap": [{"target": "src.modules.hybrid_scorer:HybridScorer", "methods": ["score"]}],
            }
        )
    )
    return leo


def _run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PERF_")}
    # the layer itself comes from this checkout; the worker's own folder is the only other path
    base["PYTHONPATH"] = str(REPO)
    base.update(env or {})
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=base, capture_output=True, text=True, timeout=120
    )


def test_worker_started_from_its_own_folder_finds_the_projects_config(tmp_path: Path) -> None:
    leo = _leo(tmp_path)
    run = _run(leo / "enrichment-worker", "worker.py")
    assert run.returncode == 0, run.stderr
    assert f"CONFIG {leo / 'config' / 'perf_config.json'}" in run.stdout
    assert f"config: {leo / 'config' / 'perf_config.json'} (enabled: true)" in run.stdout  # report()
    assert "SCORE 40.0" in run.stdout


def test_worker_started_from_elsewhere_finds_it_through_the_script_folder(tmp_path: Path) -> None:
    leo = _leo(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = _run(elsewhere, str(leo / "enrichment-worker" / "worker.py"))
    assert run.returncode == 0, run.stderr
    assert f"CONFIG {leo / 'config' / 'perf_config.json'}" in run.stdout


def test_perf_config_variable_still_wins(tmp_path: Path) -> None:
    leo = _leo(tmp_path)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"enabled": False, "wrap": []}))
    run = _run(leo / "enrichment-worker", "worker.py", env={"PERF_CONFIG": str(other)})
    # that config wraps nothing: the error names the file it read
    assert run.returncode != 0
    assert "'HybridScorer' is not wrapped" in run.stderr and str(other) in run.stderr


def test_no_config_anywhere_says_built_in_defaults(tmp_path: Path) -> None:
    leo = _leo(tmp_path)
    (leo / "config" / "perf_config.json").unlink()
    run = _run(leo / "enrichment-worker", "worker.py")
    assert run.returncode != 0
    assert "built-in defaults" in run.stderr


def test_lookup_order_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    leo = _leo(tmp_path)
    deep = leo / "enrichment-worker" / "src" / "modules"
    monkeypatch.delenv("PERF_CONFIG", raising=False)
    monkeypatch.chdir(deep)
    nearest = leo / "config" / "perf_config.json"
    assert find_config_file() == nearest
    assert load_config(use_env=False).source == str(nearest)
    closer = leo / "enrichment-worker" / "config"
    closer.mkdir()
    (closer / "perf_config.json").write_text("{}")
    assert find_config_file() == closer / "perf_config.json"  # the nearest one wins
    explicit = tmp_path / "x.json"
    explicit.write_text("{}")
    monkeypatch.setenv("PERF_CONFIG", str(nearest))
    assert find_config_file() == nearest
    assert find_config_file(explicit) == explicit
