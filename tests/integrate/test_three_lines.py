"""Issue 14 item 5: seed 004's three lines take effect wherever the class is reached: imported at module
level before or after them, inside a function (the public worker's factory), through ``from x import Y`` in
another module; ``cached_classes[...]`` keeps working; ``enabled: false`` hands back the untouched class."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

SCORER = textwrap.dedent("""
    CALLS = []


    class HybridScorer:
        def __init__(self, weight=1.0):
            self.weight = weight

        def score(self, text):
            CALLS.append(text)
            return {"text": text, "value": len(text) * self.weight}
""")

# A second module of the user's code that took the name before the worker's three lines ran.
PIPELINE = textwrap.dedent("""
    from {pkg}.scorer import HybridScorer


    def run(text):
        return HybridScorer(weight=2.0).score(text)
""")

FACTORY = textwrap.dedent("""
    def make_scorer(weight):
        from {pkg}.scorer import HybridScorer  # imported inside a function, as the public worker does

        return HybridScorer(weight=weight)
""")


@pytest.fixture
def pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    name = f"three_lines_{tmp_path.name.replace('-', '_')}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "scorer.py").write_text(SCORER)
    (root / "pipeline.py").write_text(PIPELINE.format(pkg=name))
    (root / "factory.py").write_text(FACTORY.format(pkg=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        sys.modules.pop(mod)


def _config(make_config: Any, pkg: str, **extra: Any) -> Any:
    return make_config({"wrap": [{"target": f"{pkg}.scorer:HybridScorer", "methods": ["score"]}], **extra})


def test_three_lines_reach_every_reference_to_the_class(pkg: str, make_config: Any) -> None:
    from infra.enrichment_helpers import enable_caching_for_worker

    pipeline = importlib.import_module(f"{pkg}.pipeline")  # took the name before the three lines
    scorer = importlib.import_module(f"{pkg}.scorer")
    Early = scorer.HybridScorer

    cached_classes = enable_caching_for_worker(_config(make_config, pkg))
    HybridScorer = cached_classes["HybridScorer"]

    factory = importlib.import_module(f"{pkg}.factory")
    assert HybridScorer is Early  # one class: the name replacement and every other reference agree
    for _ in range(2):
        assert HybridScorer(weight=1.0).score("ab") == {"text": "ab", "value": 2.0}
        assert Early(weight=1.0).score("ab") == {"text": "ab", "value": 2.0}
        assert pipeline.run("ab") == {"text": "ab", "value": 4.0}
        assert factory.make_scorer(3.0).score("ab") == {"text": "ab", "value": 6.0}
    # each distinct (configuration, text) computed once, whichever way the class was reached
    assert sorted(scorer.CALLS) == ["ab", "ab", "ab"]


def test_layer_off_hands_back_the_untouched_class(pkg: str, make_config: Any) -> None:
    from infra.enrichment_helpers import enable_caching_for_worker

    scorer = importlib.import_module(f"{pkg}.scorer")
    before = dict(scorer.HybridScorer.__dict__)
    classes = enable_caching_for_worker(_config(make_config, pkg, enabled=False))
    assert classes["HybridScorer"] is scorer.HybridScorer
    assert dict(scorer.HybridScorer.__dict__) == before
    scorer.HybridScorer().score("x")
    scorer.HybridScorer().score("x")
    assert scorer.CALLS == ["x", "x"]


def test_undo_restores_the_class(pkg: str, make_config: Any) -> None:
    from infra.integrate import enable, enable_caching_for_worker

    scorer = importlib.import_module(f"{pkg}.scorer")
    original = scorer.HybridScorer.__dict__["score"]
    enable_caching_for_worker(_config(make_config, pkg))
    assert scorer.HybridScorer.__dict__["score"] is not original
    enable().undo()
    assert scorer.HybridScorer.__dict__["score"] is original
