"""Issue 14 item 5: seed 004's three lines take effect wherever the class is reached: imported at module
level before or after them, inside a function (the public worker's factory), through ``from x import Y`` in
another module; ``cached_classes[...]`` keeps working; ``enabled: false`` hands back the untouched class."""

from __future__ import annotations

import importlib
import importlib.util
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


# -- the lookup with the layer off, and the typed accessors (README: "never an exception from these lines")


def test_layer_off_a_typod_target_is_a_warning_and_get_class_hands_the_class_back(
    pkg: str, make_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A new user's trial: ``enabled: false`` and a misspelled module. The two lines and ``get_class`` run
    (the class untouched); only a lookup by name has nothing to hand back, and its KeyError says why (the
    layer is off, the warning) and that the line can go (main: "'HybridScorer' is not wrapped by the 'wrap'
    list of ... (wrapped: none)", which read like a crash of the layer)."""
    from infra.enrichment_helpers import enable_caching_for_worker

    scorer = importlib.import_module(f"{pkg}.scorer")
    before = dict(scorer.HybridScorer.__dict__)
    config = make_config(
        {"enabled": False, "wrap": [{"target": f"{pkg}.scorre:HybridScorer", "methods": ["score"]}]}
    )
    with caplog.at_level("WARNING", logger="infra.integrate"):
        cached_classes = enable_caching_for_worker(config)
    (warning,) = [r.getMessage() for r in caplog.records if "wrap entry problem" in r.getMessage()]
    assert "scorre" in warning and "ignored, the layer is off" in warning
    assert cached_classes.get_class(scorer.HybridScorer) is scorer.HybridScorer
    assert dict(scorer.HybridScorer.__dict__) == before
    for key in ("HybridScorer", f"{pkg}.scorre:HybridScorer"):
        with pytest.raises(KeyError) as info:
            cached_classes[key]
        message = str(info.value)
        assert "its 'wrap' entry did not import" in message, message
        assert f"no module named '{pkg}.scorre'" in message, message  # the warning, quoted
        assert "perf-infra is off (enabled: false in" in message, message
        assert f"drop `... = cached_classes[{key!r}]`" in message, message
        assert "classes are cached in place" in message, message


def test_layer_off_a_name_not_listed_says_the_layer_is_off(pkg: str, make_config: Any) -> None:
    from infra.enrichment_helpers import enable_caching_for_worker

    cached_classes = enable_caching_for_worker(_config(make_config, pkg, cache={"enabled": False}))
    with pytest.raises(KeyError) as info:
        cached_classes["Nope"]
    message = str(info.value)
    assert "'Nope' is not wrapped by the 'wrap' list of" in message and "(wrapped: HybridScorer" in message
    assert "perf-infra is off (cache.enabled: false in" in message, message


def test_get_class_is_the_class_checked_to_be_cached(pkg: str, make_config: Any, tmp_path: Path) -> None:
    from infra.enrichment_helpers import enable_caching_for_worker

    scorer = importlib.import_module(f"{pkg}.scorer")
    cached_classes = enable_caching_for_worker(_config(make_config, pkg))
    assert cached_classes.get_class(scorer.HybridScorer) is scorer.HybridScorer
    assert cached_classes.layer_off is None

    class Unlisted:
        pass

    with pytest.raises(KeyError, match=r"Unlisted is not cached: the 'wrap' list of .* doesn't name it"):
        cached_classes.get_class(Unlisted)
    # the same module reached under a second name: a second class object the cache never patched
    copy = importlib.util.spec_from_file_location("copy_of_scorer", tmp_path / pkg / "scorer.py")
    assert copy is not None and copy.loader is not None
    module = importlib.util.module_from_spec(copy)
    copy.loader.exec_module(module)
    with pytest.raises(KeyError, match=r"is wrapped, a different class object of that name"):
        cached_classes.get_class(module.HybridScorer)


def test_layer_off_get_class_hands_back_any_class(pkg: str, make_config: Any) -> None:
    from infra.enrichment_helpers import enable_caching_for_worker

    cached_classes = enable_caching_for_worker(_config(make_config, pkg, enabled=False))
    assert cached_classes.layer_off is not None and "enabled: false" in cached_classes.layer_off
    assert cached_classes.get_class(dict) is dict


def test_get_function_is_the_cached_wrapper(
    tmp_path: Path, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.enrichment_helpers import enable_caching_for_worker

    name = f"fn_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "CALLS = []\n\ndef embed(text):\n    CALLS.append(text)\n    return len(text)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        mod = importlib.import_module(name)
        original = mod.embed
        on = enable_caching_for_worker(make_config({"wrap": [{"target": f"{name}:embed"}]}))
        wrapper = on.get_function(original)
        assert wrapper is mod.embed is on["embed"] and wrapper is not original
        assert on.get_function(wrapper) is wrapper
        assert wrapper("ab") == wrapper("ab") == 2 and mod.CALLS == ["ab"]
        with pytest.raises(KeyError, match="doesn't name it"):
            on.get_function(len)
        off = enable_caching_for_worker(
            make_config({"enabled": False, "wrap": [{"target": f"{name}:embed"}]})
        )
        assert off.get_function(original) is original and mod.embed is original
    finally:
        sys.modules.pop(name, None)
