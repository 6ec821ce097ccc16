"""Fixtures for the cache tests: a fresh SQLite-backed ``Cache`` in a temporary directory, closed after."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.cache import Cache, CacheConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache_path(tmp_path: Path) -> str:
    return str(tmp_path / "cache" / "cache.db")


@pytest.fixture
def make_cache(cache_path: str) -> Iterator[Callable[..., Cache]]:
    """Factory: ``make_cache(**settings)`` → Cache on the test's file (same file for every call)."""
    made: list[Cache] = []

    def make(**kw: Any) -> Cache:
        kw.setdefault("path", cache_path)
        backend = kw.pop("backend_obj", None)
        settings = CacheConfig(**kw)
        c = Cache(settings, backend=backend) if backend is not None else Cache(settings)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def cache(make_cache: Callable[..., Cache]) -> Cache:
    return make_cache()


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


PYTHON = sys.executable
