"""The fidelity harness (issue 14, "Must show"): a stateful worker (tests/integrate/fidelity/) run plain and
through the layer over 200 inputs, in two processes (the second reading what the first wrote); what the
caller sees is compared exactly, including after the caller mutated earlier results. Through ``patch()``,
through ``enable_caching_for_worker()`` with the class imported inside a function, and from the worker's
folder in seed 004's layout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "fidelity"
sys.path.insert(0, str(HERE))

from drive import INPUTS  # noqa: E402

N_DISTINCT_CALLS = len({(i % 3, t, 1 + i % 2) for i, t in enumerate(INPUTS)})
N_BOOM = sum("boom" in t for t in INPUTS)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERF_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def _run(mode: str, out: Path, config: Path | None = None, *, cwd: Path | None = None) -> dict[str, Any]:
    argv = [sys.executable, str(HERE / "run.py"), mode, str(out)]
    argv += [str(config)] if config is not None else []
    argv += ["--streams"]  # the streaming method is driven too
    run = subprocess.run(argv, cwd=cwd or REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def _config(path: Path, cache: Path, methods: list[str] | None = None) -> Path:
    methods = methods or ["score", "analyse", "check", "stream"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "cache": {"path": str(cache)},
                "torch": {"enabled": False},
                "metrics": {"serve": False},
                "wrap": [{"target": "fidelity_worker:FidelityWorker", "methods": methods}],
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("plain") / "plain.json"
    return _run("plain", out)


def _check_pair(cold: dict[str, Any], warm: dict[str, Any], baseline: dict[str, Any]) -> None:
    assert len(baseline["outputs"]) >= 5 * 200
    assert cold["outputs"] == baseline["outputs"]
    assert warm["outputs"] == baseline["outputs"]
    # the cold process computed each distinct call once (plain: every call, twice over for "again")
    assert cold["computed"]["score"] == N_DISTINCT_CALLS
    assert baseline["computed"]["score"] == 2 * len(INPUTS)
    # the warm process read what the cold one wrote: dicts never recomputed, raising calls always
    assert warm["computed"].get("score", 0) == 0
    assert warm["computed"].get("check", 0) == N_BOOM


def _check_models_across_processes(warm: dict[str, Any]) -> None:
    """Pydantic results and streams written by the first process are read back, not recomputed."""
    assert warm["computed"].get("analyse", 0) == 0
    assert warm["computed"].get("stream", 0) == 0


@pytest.mark.parametrize("mode", ["patch", "three_lines"])
def test_two_processes_equal_the_plain_worker(mode: str, tmp_path: Path, baseline: dict[str, Any]) -> None:
    config = _config(tmp_path / "perf_config.json", tmp_path / "cache" / "c.db")
    cold = _run(mode, tmp_path / "cold.json", config)
    warm = _run(mode, tmp_path / "warm.json", config)
    _check_pair(cold, warm, baseline)
    _check_models_across_processes(warm)


WORKER_PY = textwrap.dedent("""
    import json
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent.parent))

    from infra.enrichment_helpers import enable_caching_for_worker
    cached_classes = enable_caching_for_worker()
    FidelityWorker = cached_classes["FidelityWorker"]

    from drive import drive
    from fidelity_worker import COMPUTED

    outputs = drive(lambda **s: FidelityWorker(**s), streams="--streams" in sys.argv)
    Path(sys.argv[1]).write_text(json.dumps({"outputs": outputs, "computed": COMPUTED}))
""")


def test_seed_004_layout_from_the_workers_folder(tmp_path: Path, baseline: dict[str, Any]) -> None:
    """Leo/config/perf_config.json, Leo/enrichment-worker/worker.py with the three lines, started as
    ``cd enrichment-worker && python worker.py``: finds Leo's config, and a second start reads the first's
    entries."""
    leo = tmp_path / "Leo"
    folder = leo / "enrichment-worker"
    folder.mkdir(parents=True)
    for name in ("fidelity_worker.py", "drive.py"):
        shutil.copy(HERE / name, folder / name)
    (folder / "worker.py").write_text(WORKER_PY)
    _config(leo / "config" / "perf_config.json", tmp_path / "cache" / "c.db")
    results = []
    for name in ("cold.json", "warm.json"):
        argv = [sys.executable, "worker.py", str(tmp_path / name), "--streams"]
        run = subprocess.run(argv, cwd=folder, env=_env(), capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        results.append(json.loads((tmp_path / name).read_text()))
    _check_pair(results[0], results[1], baseline)
    _check_models_across_processes(results[1])
