"""``perf-infra ... | head``: a reader that goes away ends the command quietly (exit 141, as a process
killed by SIGPIPE), never a BrokenPipeError traceback (main printed one for `cache stats --json | head`
and `--json doctor | head`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "argv",
    [["cache", "stats", "--json"], ["--json", "doctor"], ["config", "show"]],
    ids=["cache-stats", "doctor", "config-show"],
)
def test_closed_stdout_exits_quietly(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "perf_config.json").write_text('{"metrics": {"port": 0}}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERF_")}
    env["PYTHONPATH"] = str(REPO)
    if argv[0] == "cache":  # a store to report on
        seed = "from infra.cache import get_cache; c = get_cache(); c.set('ns', 'k', 'v'); c.close()"
        subprocess.run([sys.executable, "-c", seed], cwd=tmp_path, env=env, check=True, timeout=120)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte: every write fails with EPIPE
    try:
        result = subprocess.run(
            [sys.executable, "-m", "infra", *argv],
            cwd=tmp_path,
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
