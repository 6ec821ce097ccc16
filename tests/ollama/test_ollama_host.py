"""Which Ollama server a client talks to: an explicit ``host`` argument beats the section's host (set in code,
or the file's, which ``$OLLAMA_HOST`` overrides in the loader), which beats ``$OLLAMA_HOST``, which beats the
default. Checked on the resolved ``base_url`` of both clients, and once end to end against the test server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ollama_testutil import LLM, settings

from infra.config import OllamaConfig, load_config
from infra.ollama import AsyncOptimizedOllama, OptimizedOllama
from infra.testing.ollama_server import OllamaTestServer

CLIENTS = [OptimizedOllama, AsyncOptimizedOllama]


def base_url(cls: Any, *args: Any, **kw: Any) -> str:
    client = cls(*args, **kw)
    return str(client.base_url)


@pytest.fixture(params=CLIENTS, ids=["sync", "async"])
def cls(request: pytest.FixtureRequest) -> Any:
    return request.param


def test_explicit_host_beats_the_section_and_the_environment(cls: Any, cache: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("OLLAMA_HOST", ":7777")
    url = base_url(cls, ":8888", settings=OllamaConfig(host=":9999"), cache=cache)
    assert url == "http://127.0.0.1:8888"


def test_a_host_set_in_code_beats_the_environment(cls: Any, cache: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("OLLAMA_HOST", ":7777")
    assert base_url(cls, settings=OllamaConfig(host=":9999"), cache=cache) == "http://127.0.0.1:9999"
    assert base_url(cls, OllamaConfig(host=":9999"), cache=cache) == "http://127.0.0.1:9999"


def test_the_environment_beats_the_default(cls: Any, cache: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("OLLAMA_HOST", ":7777")
    assert base_url(cls, settings=OllamaConfig(timeout=10), cache=cache) == "http://127.0.0.1:7777"


def test_the_default_when_nothing_names_a_host(cls: Any, cache: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert base_url(cls, settings=OllamaConfig(), cache=cache) == "http://127.0.0.1:11434"


def test_the_environment_beats_the_files_host(cls: Any, cache: Any, tmp_path: Path) -> None:
    path = tmp_path / "perf_config.json"
    path.write_text(json.dumps({"ollama": {"host": "http://127.0.0.1:9999"}}))
    from_file = load_config(path, environ={}).ollama
    assert base_url(cls, settings=from_file, cache=cache) == "http://127.0.0.1:9999"
    overridden = load_config(path, environ={"OLLAMA_HOST": "http://127.0.0.1:7777"}).ollama
    assert base_url(cls, settings=overridden, cache=cache) == "http://127.0.0.1:7777"


def test_a_host_set_in_code_is_the_one_called(server: OllamaTestServer, cache: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")  # nothing listens there
    llm = OptimizedOllama(settings=settings(host=server.url), cache=cache)
    assert llm.generate(LLM, "from the section").done
    llm.close()


def test_the_environment_is_called_when_the_section_names_no_host(
    server: OllamaTestServer, cache: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    llm = OptimizedOllama(settings=settings(), cache=cache)
    assert llm.generate(LLM, "from the environment").done
    llm.close()
