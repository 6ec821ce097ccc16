"""Fixtures for infra.integrate: a real importable module of sample classes per test, configs, cleanup."""

from __future__ import annotations

import itertools
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLE = textwrap.dedent('''
    """Sample user code for the integration tests (written to a temp dir, imported for real)."""
    import abc

    CALLS = []


    class Scorer:
        """Scores text."""

        def __init__(self, weight=1.0):
            self.weight = weight

        def score(self, text: str, *, scale: int = 1) -> dict:
            """Score one text."""
            CALLS.append(("score", text, scale))
            if text == "boom":
                raise ValueError("cannot score 'boom'")
            return {"text": text, "value": len(text) * scale * self.weight}

        async def ascore(self, text: str) -> list:
            """Score one text, async."""
            CALLS.append(("ascore", text))
            return [text, len(text)]

        @staticmethod
        def double(x: int) -> int:
            CALLS.append(("double", x))
            return 2 * x

        @classmethod
        def make(cls, x: int) -> str:
            CALLS.append(("make", x))
            return f"{cls.__name__}:{x}"

        @property
        def label(self):
            return "scorer"

        def stream(self, n):
            yield from range(n)

        def plain(self, x):
            CALLS.append(("plain", x))
            return x


    class Slotted:
        __slots__ = ("k",)

        def __init__(self, k):
            self.k = k

        def get(self, x):
            CALLS.append(("slotted", x))
            return [self.k, x]


    class Base(abc.ABC):
        @abc.abstractmethod
        def run(self, x): ...

        def inherited(self, x):
            CALLS.append(("inherited", x))
            return x + 1


    class Impl(Base):
        def run(self, x):
            CALLS.append(("run", x))
            return x * 10
''')

_counter = itertools.count()


@pytest.fixture
def sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh module of sample classes, importable as ``<name>`` (unique per test)."""
    name = f"integrate_sample_{next(_counter)}"
    (tmp_path / f"{name}.py").write_text(SAMPLE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module(name)
    yield module
    sys.modules.pop(name, None)


@pytest.fixture
def make_config(tmp_path: Path) -> Any:
    """``make_config({...})``: a PerfConfig from a dict (cache in tmp_path unless given, torch off,
    environment ignored), loaded from a real file like a user's."""
    from infra.config import load_config

    def make(data: dict[str, Any]) -> Any:
        data = json.loads(json.dumps(data))
        data.setdefault("cache", {}).setdefault("path", str(tmp_path / "cache" / "c.db"))
        data.setdefault("torch", {}).setdefault("enabled", False)
        path = tmp_path / f"perf_config_{next(_counter)}.json"
        path.write_text(json.dumps(data))
        return load_config(path, use_env=False)

    return make


@pytest.fixture
def private_cache(tmp_path: Path) -> Iterator[Any]:
    from infra.cache import Cache, CacheConfig

    cache = Cache(CacheConfig(path=str(tmp_path / "private" / "c.db")))
    yield cache
    cache.close()


@pytest.fixture(autouse=True)
def _undo_integration() -> Iterator[None]:
    yield
    from infra.integrate import active_handle

    h = active_handle()
    if h is not None:
        h.undo()
