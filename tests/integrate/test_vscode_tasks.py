""".vscode/tasks.json: the eight tasks exist, are portable `python -m ...` processes, and each one's command
runs and exits 0 (Serve /metrics: started, scraped once, stopped with Ctrl-C; Open Dashboard: finds the
running endpoint, or serves one until stopped)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LABELS = [
    "Show Cache Stats",
    "Show Performance Metrics",
    "Clear Cache",
    "Serve /metrics",
    "Open Dashboard",
    "Run Demo",
    "Run Tests",
    "Run Benchmarks",
]
# The two suite runners are bounded here by narrowing what they run (the command itself is unchanged):
NARROW = {
    "Run Tests": ["tests/integrate/test_integrate_cached_class.py"],
    "Run Benchmarks": ["integrate", "--quick"],
}


def _tasks() -> dict[str, dict[str, Any]]:
    text = (ROOT / ".vscode" / "tasks.json").read_text()
    # tasks.json is JSON with comments (JSONC); ours has whole-line comments only.
    data = json.loads("\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("//")))
    return {t["label"]: t for t in data["tasks"]}


def _argv(task: dict[str, Any]) -> list[str]:
    subst = {"${command:python.interpreterPath}": sys.executable, "${workspaceFolder}": str(ROOT)}
    return [subst.get(task["command"], task["command"]), *task.get("args", [])]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def task_env(tmp_path: Path) -> dict[str, str]:
    """The tasks' environment, pointed at a throwaway config and cache (never the developer's)."""
    config = {"cache": {"path": str(tmp_path / "cache" / "c.db")}, "torch": {"enabled": False}}
    (tmp_path / "perf_config.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERF_")}
    env.update(
        {
            "PERF_CONFIG": str(tmp_path / "perf_config.json"),
            "OLLAMA_HOST": f"http://127.0.0.1:{_free_port()}",  # nothing there: the demo uses its test server
            "PYTHONUNBUFFERED": "1",
            "BROWSER": "true",  # Open Dashboard on a desktop would start a browser: `true <url>` instead
        }
    )
    return env


def test_the_eight_tasks_are_portable_python_processes() -> None:
    """Every task runs the workspace's interpreter as a process (no shell) from the workspace folder."""
    tasks = _tasks()
    assert list(tasks) == LABELS
    for label, t in tasks.items():
        assert t["type"] == "process", label
        assert t["command"] == "${command:python.interpreterPath}", label
        assert t["args"][0] == "-m" and t["options"]["cwd"] == "${workspaceFolder}", label
        assert t["args"][1] == "infra", label
    assert tasks["Serve /metrics"]["isBackground"] is True
    assert tasks["Open Dashboard"]["isBackground"] is True  # serves until stopped when nothing else does


@pytest.mark.parametrize("label", [lb for lb in LABELS if lb != "Serve /metrics"])
def test_task_command_exits_zero(label: str, task_env: dict[str, str]) -> None:
    argv = _argv(_tasks()[label]) + NARROW.get(label, [])
    server = None
    if label in ("Show Performance Metrics", "Open Dashboard"):  # they read a running endpoint
        from infra.server import serve_metrics

        server = serve_metrics(port=0)
        task_env["PERF_METRICS_PORT"] = str(server.port)
    try:
        out = subprocess.run(
            argv, cwd=ROOT, env=task_env, capture_output=True, text=True, timeout=240, check=False
        )
    finally:
        if server is not None:
            server.close()
    assert out.returncode == 0, f"{label}: {argv}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    if label == "Open Dashboard":  # found the running endpoint: printed its page's URL, served nothing
        assert server is not None and f"http://127.0.0.1:{server.port}/dashboard" in out.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="Ctrl-C is sent as SIGINT")
def _sigint(disposition: Any) -> Any:
    """preexec_fn giving the child SIGINT's ``disposition`` whatever this runner inherited (a suite started
    with ``cmd &`` from a non-interactive shell inherits SIGINT ignored, and passes that on)."""

    def set_it() -> None:
        signal.signal(signal.SIGINT, disposition)

    return set_it


@pytest.mark.parametrize(
    ("child_sigint", "stop_with"),
    [
        pytest.param(signal.SIG_DFL, signal.SIGINT, id="ctrl-c"),
        pytest.param(signal.SIG_DFL, signal.SIGTERM, id="sigterm"),
        # started in the background: SIGINT stays ignored as the shell asked, SIGTERM still stops it
        pytest.param(signal.SIG_IGN, signal.SIGTERM, id="sigterm-with-sigint-ignored"),
    ],
)
def test_serve_metrics_task_serves_until_signalled_then_exits_zero(
    task_env: dict[str, str], child_sigint: Any, stop_with: signal.Signals
) -> None:
    task_env["PERF_METRICS_PORT"] = "0"
    proc = subprocess.Popen(
        _argv(_tasks()["Serve /metrics"]),
        cwd=ROOT,
        env=task_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint(child_sigint),
    )
    try:
        assert proc.stdout is not None
        # The URL is printed once the signal handlers are installed: no grace sleep needed after it.
        line = proc.stdout.readline()
        m = re.search(r"http://[\d.]+:(\d+)/metrics", line)
        assert m, line
        with urllib.request.urlopen(f"http://127.0.0.1:{m.group(1)}/metrics", timeout=5) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        proc.send_signal(stop_with)
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_open_dashboard_task_serves_the_dashboard_until_sigterm_when_nothing_else_does(
    task_env: dict[str, str],
) -> None:
    task_env["PERF_METRICS_PORT"] = "0"
    proc = subprocess.Popen(
        _argv(_tasks()["Open Dashboard"]),
        cwd=ROOT,
        env=task_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the signal handlers are in
        m = re.search(r"http://[\d.]+:(\d+)/dashboard", line)
        assert m and "served by this process" in line, line
        with urllib.request.urlopen(f"http://127.0.0.1:{m.group(1)}/dashboard", timeout=5) as r:
            assert r.status == 200 and b"perf-infra dashboard" in r.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{m.group(1)}/dashboard/data", timeout=5) as r:
            assert "current" in json.loads(r.read())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
