"""python -m infra: commands, --json, exit statuses and one-line errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(
    *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("PERF_") and k != "OLLAMA_HOST"}
    base["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "infra", *argv],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env={**base, **(env or {})},
        timeout=60,
    )


def test_no_command_prints_help_and_fails() -> None:
    result = run()
    assert result.returncode == 2 and "usage:" in result.stderr


def test_json_flag_works_before_and_after_the_command() -> None:
    before = run("--json", "config", "check")
    after = run("config", "check", "--json")
    assert before.returncode == after.returncode == 0
    assert json.loads(before.stdout) == json.loads(after.stdout)


def test_doctor_reports_each_check(tmp_path: Path) -> None:
    result = run("doctor", "--json", cwd=tmp_path, env={"OLLAMA_HOST": "http://127.0.0.1:9"})
    assert result.returncode == 0, result.stderr
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["config"]["status"] == "ok" and "built-in defaults" in checks["config"]["detail"]
    assert checks["cache directory"]["status"] == "ok"
    assert checks["ollama"]["status"] == "warn"


def test_doctor_fails_on_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"cache": {"memory_items": -1}}')
    result = run("doctor", "--config", str(bad))
    assert result.returncode == 1 and "cache.memory_items" in result.stdout
    assert f"python -m infra config check --config {bad}" in result.stdout, "the hint reads the same file"


def test_config_check_lists_a_duplicate_key_with_every_other_problem(tmp_path: Path) -> None:
    """The new-user trial's file: only ``2:33: duplicate key 'backend'`` came out, hiding the rest."""
    path = tmp_path / "perf.json"
    path.write_text(
        '{"enabled": true,\n "cache": {"backend": "memory", "backend": "sqlite", "bakend": 1},\n'
        ' "http": {"retry": {"attempts": "x"}}}'
    )
    result = run("config", "check", "--config", str(path))
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "3 problem(s)" in out, out
    duplicate = f"{path}:2:33: duplicate key 'backend'"
    for expected in (duplicate, "cache.bakend: unknown key", "http.retry.attempts"):
        assert expected in out, out


def test_config_check_reads_a_file_with_a_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "perf.json"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"enabled": true, "cache": {"backend": "memory"}}')
    result = run("config", "check", "--config", str(path), env={"PERF_ENABLED": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok, layer enabled" in result.stdout


def test_config_show_json_names_the_file_it_read(tmp_path: Path) -> None:
    path = tmp_path / "my.json"
    path.write_text('{"cache": {"memory_items": 10}}')
    result = run("--json", "config", "show", "--config", str(path), env={"PERF_CACHE_PATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["source"] == str(path) and shown["env_overrides"] == ["PERF_CACHE_PATH"]
    assert shown["config"]["cache"]["memory_items"] == 10


def test_doctor_warns_when_the_metrics_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run("doctor", "--json", cwd=tmp_path, env={"PERF_METRICS_PORT": str(port)})
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["metrics port"]["status"] == "warn" and "taken" in checks["metrics port"]["detail"]


def test_metrics_show_without_an_endpoint_says_how_to_start_one(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run("metrics", "show", cwd=tmp_path, env={"PERF_METRICS_PORT": str(port)})
    assert result.returncode == 1
    assert "no /metrics endpoint answers" in result.stderr and "metrics serve" in result.stderr
    assert result.stderr.count("\n") == 1


def test_bench_lists_and_rejects_unknown_names() -> None:
    listed = run("bench", "--list")
    assert listed.returncode == 0
    names = listed.stdout.split()
    assert names == sorted(p.stem.removeprefix("bench_") for p in (REPO / "bench").glob("bench_*.py"))
    unknown = run("bench", "no-such-bench")
    assert unknown.returncode == 2 and "no benchmark 'no-such-bench'" in unknown.stderr


@pytest.mark.parametrize("argv", [["config", "nope"], ["metrics", "serve", "--port", "x"]])
def test_usage_errors_exit_2(argv: list[str]) -> None:
    assert run(*argv).returncode == 2
