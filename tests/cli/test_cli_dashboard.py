"""python -m infra dashboard: finds a running endpoint's page, never prints the token, errors in one line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from infra.server import serve_metrics

REPO = Path(__file__).resolve().parents[2]


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PERF_")}
    base.update({"PYTHONPATH": str(REPO), "BROWSER": "true"})  # a desktop would open a browser: `true`
    return subprocess.run(
        [sys.executable, "-m", "infra", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**base, **(env or {})},
        timeout=60,
    )


def test_dashboard_points_at_the_running_endpoint_and_keeps_its_token_out_of_the_output() -> None:
    with serve_metrics(port=0, token="s3cret-token") as srv:
        out = run("dashboard", "--json", "--port", str(srv.port), env={"PERF_METRICS_TOKEN": "s3cret-token"})
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {
            "url": f"http://127.0.0.1:{srv.port}/dashboard",
            "served_here": False,
        }
        text = run(
            "dashboard", "--no-browser", "--port", str(srv.port), env={"PERF_METRICS_TOKEN": "s3cret-token"}
        )
        assert text.returncode == 0 and f"http://127.0.0.1:{srv.port}/dashboard" in text.stdout
        assert "?token=" in text.stdout and "$PERF_METRICS_TOKEN" in text.stdout  # how, not what
        assert "s3cret-token" not in text.stdout + text.stderr + out.stdout + out.stderr


def test_a_port_held_by_something_else_is_a_one_line_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        out = run("dashboard", "--no-browser", "--port", str(s.getsockname()[1]))
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
