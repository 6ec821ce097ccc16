"""Fixtures for tests/ollama: the Ollama API test server on 127.0.0.1 (port 0), a real cache in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.testing.ollama_server import OllamaTestServer, ServerSettings


@pytest.fixture
def server() -> Iterator[OllamaTestServer]:
    """A fast server (no simulated latency) so tests run in milliseconds."""
    with OllamaTestServer(ServerSettings(min_tokens=8, max_tokens=24)) as srv:
        yield srv


@pytest.fixture
def make_server() -> Iterator[Any]:
    """Factory for servers with specific settings; all are stopped at teardown."""
    started: list[OllamaTestServer] = []

    def make(**kw: Any) -> OllamaTestServer:
        kw.setdefault("min_tokens", 8)
        kw.setdefault("max_tokens", 24)
        srv = OllamaTestServer(ServerSettings(**kw)).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def _real_cache(path: Path) -> Any:
    from infra.cache import Cache, CacheConfig

    return Cache(CacheConfig(path=str(path / "cache.db")))


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Any]:
    """The real infra.cache (SQLite under tmp_path, L1 in front)."""
    c = _real_cache(tmp_path)
    yield c
    close = getattr(c, "close", None)
    if close is not None:
        close()


@pytest.fixture
def client() -> Iterator[Any]:
    """Factory for official sync ``ollama.Client`` objects; all are closed at teardown (no leaked sockets)."""
    import ollama

    made: list[Any] = []

    def make(url: str) -> Any:
        c = ollama.Client(host=url)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
