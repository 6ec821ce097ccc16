"""The public verbs are typed: a misspelled keyword to any of them is a mypy error (stamina's tests/typing).

One ``mypy --strict --warn-unused-ignores`` run over the ``misspelled_*.py`` files beside this one. Each
misspelled call there carries ``# type: ignore[<code>]``; if a verb stops catching the typo (an ``Any``
factory, ``**kwargs: Any``), its ignore goes unused and mypy reports that line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
FILES = sorted(p.name for p in HERE.glob("misspelled_*.py"))


@pytest.fixture(scope="module")
def mypy_report() -> dict[str, list[str]]:
    """mypy's complaints, per checked file (one run for all of them)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "mypy", "--strict", "--warn-unused-ignores", "--no-error-summary"]
    cmd += [str(HERE / f) for f in FILES]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    report: dict[str, list[str]] = {f: [] for f in FILES}
    for line in done.stdout.splitlines():
        m = re.match(r"(?:.*/)?(misspelled_\w+\.py):\d+: (error|note): ", line)
        if m:
            report[m.group(1)].append(line)
        elif line.strip():
            report.setdefault("<other>", []).append(line)
    # 0: clean; 1: complaints, each listed above; anything else (or 1 with none) is mypy failing to run
    assert done.returncode == 0 or (done.returncode == 1 and done.stdout.strip()), done.stderr
    return report


def test_every_misspelled_file_was_checked() -> None:
    want = {"misspelled_http.py", "misspelled_cache.py", "misspelled_ollama.py", "misspelled_metrics.py"}
    assert want | {"misspelled_server.py", "misspelled_integrate.py", "misspelled_testing.py"} <= set(FILES)


@pytest.mark.parametrize(
    "name",
    [
        "misspelled_http.py",
        "misspelled_cache.py",
        "misspelled_ollama.py",  # typed for mypy through infra/ollama/_verbs.py's overloaded protocols
        "misspelled_metrics.py",
        "misspelled_server.py",
        "misspelled_integrate.py",
        "misspelled_testing.py",  # OllamaTestServer's settings keywords, spelled out
    ],
)
def test_a_misspelled_keyword_to_a_public_verb_is_a_type_error(
    mypy_report: dict[str, list[str]], name: str
) -> None:
    assert mypy_report.get("<other>", []) == []
    assert mypy_report[name] == []
