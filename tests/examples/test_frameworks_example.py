"""examples/frameworks_cached.py runs as documented: LangChain and LlamaIndex cached through the public
transport argument, warm runs ask the Ollama test server for nothing, answers equal the plain ones."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_frameworks_example_runs_and_warm_runs_send_no_requests() -> None:
    pytest.importorskip("langchain_ollama")
    pytest.importorskip("llama_index.llms.ollama")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERF_")}
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run(
        [sys.executable, "-W", "error", "-m", "examples.frameworks_cached"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    warm = re.findall(r"warm .* \((\d+) requests\)", run.stdout)
    assert len(warm) == 6 and set(warm) == {"0"}, run.stdout
    assert "plain ChatOllama answers equal the cached ones" in run.stdout
    assert not run.stderr.strip(), run.stderr  # no unclosed-socket warnings either
