"""A ``wrap`` entry whose target is a module-level function is accepted everywhere: ``config check``,
``enable_caching_for_worker()`` (the function is cached in its module) and ``python -m infra warm``'s
default mode, which fills exactly the entries the wrapped function then hits.

On main, ``warm`` wanted such an entry while ``config check`` and ``enable()`` rejected it
(``WrapError: ... is a function, not a class``).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.cli import main

TTS = """
CALLS = []

def synthesize(text):
    CALLS.append(text)
    return ("AUDIO:" + text).encode()
"""


@pytest.fixture
def tts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    name = f"tts_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(TTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module(name)
    sys.modules.pop(name, None)


def _config_file(tmp_path: Path, tts: Any, **entry: Any) -> Path:
    path = tmp_path / "perf_config.json"
    data = {
        "cache": {"path": str(tmp_path / "cache" / "c.db")},
        "torch": {"enabled": False},
        "metrics": {"serve": False},
        "wrap": [{"target": f"{tts.__name__}:synthesize", "namespace": "tts", **entry}],
    }
    path.write_text(json.dumps(data))
    return path


def test_config_check_accepts_a_function_target(
    tmp_path: Path, tts: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "check", "--config", str(_config_file(tmp_path, tts))]) == 0
    assert ": ok" in capsys.readouterr().out


def test_a_function_target_with_methods_is_one_clear_problem(
    tmp_path: Path, tts: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config_file(tmp_path, tts, methods=["synthesize"])
    assert main(["config", "check", "--config", str(path), "--json"]) == 2
    (problem,) = json.loads(capsys.readouterr().out)["problems"]
    assert problem.startswith("wrap[0].methods: ") and "is a function" in problem


def test_warm_then_the_enabled_worker_hits_without_calling(
    tmp_path: Path, tts: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from infra.enrichment_helpers import enable_caching_for_worker

    path = _config_file(tmp_path, tts)
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("hello\ngood morning\n")
    assert main(["warm", "-f", str(phrases), "-n", "tts", "--config", str(path), "--no-progress"]) == 0
    assert tts.CALLS == ["hello", "good morning"] or sorted(tts.CALLS) == ["good morning", "hello"]
    tts.CALLS.clear()

    original = tts.synthesize
    cached = enable_caching_for_worker(str(path))
    assert cached["synthesize"] is tts.synthesize is not original
    assert tts.synthesize("hello") == b"AUDIO:hello"
    assert tts.synthesize("good morning") == b"AUDIO:good morning"
    assert tts.CALLS == []
    assert tts.synthesize("new phrase") == b"AUDIO:new phrase"
    assert tts.CALLS == ["new phrase"]

    from infra.integrate import active_handle

    handle = active_handle()
    assert handle is not None
    handle.undo()
    assert tts.synthesize is original


def test_layer_off_hands_back_the_original_function(tmp_path: Path, tts: Any) -> None:
    from infra.enrichment_helpers import enable_caching_for_worker

    path = _config_file(tmp_path, tts)
    data = json.loads(path.read_text())
    data["enabled"] = False
    path.write_text(json.dumps(data))
    original = tts.synthesize
    assert enable_caching_for_worker(str(path))["synthesize"] is original
    assert tts.synthesize is original
