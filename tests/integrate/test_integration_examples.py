"""INTEGRATION_EXAMPLES.py: every example runs as written, documents itself, and is listed."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    name = "INTEGRATION_EXAMPLES"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "INTEGRATION_EXAMPLES.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


MODULE = _load()
NAMES = [fn.__name__ for fn in MODULE.EXAMPLES]


def test_every_example_function_is_listed_and_documented() -> None:
    """Each example_* function is in EXAMPLES, named in the module docstring, with a code-block docstring."""
    defined = [n for n, f in inspect.getmembers(MODULE, inspect.isfunction) if n.startswith("example_")]
    assert sorted(defined) == sorted(NAMES)
    for fn in MODULE.EXAMPLES:
        assert fn.__name__ in (MODULE.__doc__ or "")
        assert fn.__doc__ and "::" in fn.__doc__, f"{fn.__name__} needs a docstring with a code block"


def test_the_issue_topics_are_all_covered() -> None:
    topics = [
        "three_line",
        "cache_any_function",
        "http_client",
        "ollama_client",
        "fastapi",
        "aiohttp",
        "thread_server",
        "hot_path",
    ]
    for t in topics:
        assert any(t in n for n in NAMES), t


@pytest.mark.parametrize("name", NAMES)
def test_example_runs(name: str, capsys: Any) -> None:
    """The example runs start to finish (its own asserts included) and returns what it showed."""
    from infra.integrate import active_handle

    result = getattr(MODULE, name)()
    assert isinstance(result, dict) and result
    assert capsys.readouterr().out.strip()
    assert active_handle() is None, "an example left the integration enabled"


def test_the_three_line_and_patch_examples_show_no_service_work_when_warm() -> None:
    assert MODULE.example_three_line_worker_change()["warm_requests"] == 0
    assert MODULE.example_patch_without_changing_imports()["warm_stub_requests"] == 0


def test_running_the_file_runs_every_example() -> None:
    import subprocess

    out = subprocess.run(
        [sys.executable, str(ROOT / "INTEGRATION_EXAMPLES.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("== example_") == len(NAMES) and "FAILED" not in out.stdout
