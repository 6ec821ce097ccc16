"""With the layer switched off, nothing is routed or claimed: ``route_official()`` leaves the official
names untouched (main replaced ``ollama.Client`` even under ``PERF_ENABLED=0``) and ``enable().report()``
says the layer is off and which switch did it (main: "perf-infra enabled")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ollama")


@pytest.fixture
def fresh_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from infra.config import reset_config

    for var in ("PERF_CONFIG", "PERF_ENABLED", "PERF_OLLAMA_ENABLED"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "config").mkdir()
    path = tmp_path / "config" / "perf_config.json"
    path.write_text(json.dumps({"torch": {"enabled": False}, "metrics": {"serve": False}}))
    monkeypatch.chdir(tmp_path)
    reset_config()
    yield path
    reset_config()


@pytest.mark.parametrize(
    ("var", "reason"),
    [("PERF_ENABLED", "PERF_ENABLED in the environment"), ("PERF_OLLAMA_ENABLED", "PERF_OLLAMA_ENABLED")],
)
def test_route_official_is_a_no_op_when_switched_off_by_the_environment(
    fresh_config: Path, monkeypatch: pytest.MonkeyPatch, var: str, reason: str
) -> None:
    import ollama

    import infra.ollama

    monkeypatch.setenv(var, "0")
    before = {
        name: ollama.__dict__.get(name) for name in ("Client", "AsyncClient", "chat", "embed", "_client")
    }
    routing = infra.ollama.route_official()
    after = {name: ollama.__dict__.get(name) for name in before}
    assert after == before
    assert routing.client is None and not routing.active
    assert reason in routing.report() and "nothing routed" in routing.report()
    routing.undo()
    assert {name: ollama.__dict__.get(name) for name in before} == before


def test_route_official_is_a_no_op_when_the_config_turns_ollama_off(fresh_config: Path) -> None:
    import ollama

    import infra.ollama

    fresh_config.write_text(json.dumps({"ollama": {"enabled": False}, "torch": {"enabled": False}}))
    client_before = ollama.Client
    routing = infra.ollama.route_official()
    assert ollama.Client is client_before
    assert f"ollama.enabled: false in {fresh_config}" in routing.report()


def test_report_says_the_layer_is_off_and_that_the_environment_did_it(
    fresh_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import infra

    monkeypatch.setenv("PERF_ENABLED", "0")
    handle = infra.enable()
    try:
        text = handle.report()
        assert not text.startswith("perf-infra enabled"), text
        first = text.splitlines()[0]
        assert first.startswith("perf-infra OFF") and "PERF_ENABLED in the environment" in first, text
    finally:
        handle.undo()


def test_report_names_the_file_when_the_file_switches_off(fresh_config: Path) -> None:
    import infra

    fresh_config.write_text(json.dumps({"enabled": False, "torch": {"enabled": False}}))
    handle = infra.enable()
    try:
        assert handle.report().splitlines()[0].startswith(f"perf-infra OFF: enabled: false in {fresh_config}")
    finally:
        handle.undo()
