"""README's worker recipe ("Add it to a worker: two lines") type-checks under ``mypy --strict``, and what
``enable_caching_for_worker()`` hands back is typed: ``get_class(C)`` is ``type[C]``, ``get_function(f)``
is ``f``'s type, a lookup by name is a class or a callable (not ``Any``).

The recipe is README's own block, pasted into a worker beside a typed ``src/modules/hybrid_scorer.py`` (the
class the section's ``wrap`` JSON names), as a reader would; mypy runs once over it, from the repository
root as tests/typing/test_typing.py does. Seed 004's third line is checked too: mypy rejects it where the
class was imported, which is why README dropped it (it still works at runtime: tests/integrate).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.readme import BLOCKS

ROOT = Path(__file__).parents[2]
SECTION = "Add it to a worker: two lines"

SCORER = """
def embed(text: str) -> list[float]:
    return [float(len(text))]


class HybridScorer:
    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def score(self, text: str) -> float:
        return len(text) * self.weight
"""

# Appended to README's block: what a typed worker does with the result (reveal_type: mypy's notes).
USES = """
from src.modules.hybrid_scorer import embed

checked = cached_classes.get_class(HybridScorer)
reveal_type(checked)
reveal_type(cached_classes.get_function(embed))
reveal_type(cached_classes["HybridScorer"])
value: float = checked(weight=2.0).score("calm river")
"""

SEED_004_LINE = '\nHybridScorer = cached_classes["HybridScorer"]  # seed 004\'s third line\n'


def _worker_project(tmp_path: Path) -> tuple[Path, int]:
    """README's block with the uses above as ``worker.py``, with seed 004's line as ``seed_004.py``; the
    number of that line there."""
    (fragment,) = [b for b in BLOCKS if b.section == SECTION and b.lang == "json"]
    (module, _cls) = json.loads("{" + fragment.code + "}")["wrap"][0]["target"].split(":")
    (recipe,) = [b for b in BLOCKS if b.section == SECTION and b.lang == "python"]
    folder = tmp_path.joinpath(*module.split(".")[:-1])
    folder.mkdir(parents=True)
    folder.joinpath(module.split(".")[-1] + ".py").write_text(SCORER)
    packages = module.split(".")[:-1]
    for depth in range(1, len(packages) + 1):  # regular packages, as a worker project has them
        tmp_path.joinpath(*packages[:depth], "__init__.py").touch()
    (tmp_path / "worker.py").write_text(recipe.code + USES)
    (tmp_path / "seed_004.py").write_text(recipe.code + SEED_004_LINE)
    return tmp_path, (recipe.code + SEED_004_LINE).count("\n")


@pytest.fixture(scope="module")
def mypy_lines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """mypy's lines per file (``"<line>: <error or note>"``); ``"seed line"`` holds seed 004's line number."""
    project, seed_line = _worker_project(tmp_path_factory.mktemp("worker"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--show-error-codes"]
    cmd += [str(project / "worker.py"), str(project / "seed_004.py")]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out: dict[str, list[str]] = {
        "worker.py": [],
        "seed_004.py": [],
        "<other>": [],
        "seed line": [str(seed_line)],
    }
    for line in done.stdout.splitlines():
        m = re.match(r"(?:.*/)?(worker\.py|seed_004\.py):(\d+): (.*)$", line)
        if m:
            out[m.group(1)].append(f"{m.group(2)}: {m.group(3)}")
        elif line.strip():
            out["<other>"].append(line)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return out


def test_readme_recipe_type_checks_under_strict(mypy_lines: dict[str, list[str]]) -> None:
    out = mypy_lines
    assert out["<other>"] == []
    errors = [line for line in out["worker.py"] if ": error: " in line]
    assert errors == [], errors


def test_the_accessors_are_typed_by_their_argument(mypy_lines: dict[str, list[str]]) -> None:
    out = mypy_lines
    revealed = [
        line.split('Revealed type is "')[1].rstrip('"').replace("builtins.", "")
        for line in out["worker.py"]
        if "Revealed" in line
    ]
    assert revealed[0] == "type[src.modules.hybrid_scorer.HybridScorer]"
    assert revealed[1] == "def (text: str) -> list[float]"
    # by name: a class or a callable returning object (`Callable[..., object]`, which mypy writes with
    # `*Any, **Any` parameters), not Any: a typed worker narrows it, or uses get_class
    assert revealed[2] in ("type | (def (*Any, **Any) -> object)", "Union[type, def (*Any, **Any) -> object]")
    assert len(revealed) == 3, out["worker.py"]


def test_seed_004s_third_line_is_what_mypy_rejects(mypy_lines: dict[str, list[str]]) -> None:
    """README: the name replacement works at runtime, but mypy won't let a worker rebind an imported class."""
    out = mypy_lines["seed_004.py"]
    (seed_line,) = mypy_lines["seed line"]
    assert "error: Cannot assign to a type  [misc]" in [line.split(": ", 1)[1] for line in out], out
    # (and, the lookup being typed now, that its value isn't known to be HybridScorer: [assignment])
    assert {line.split(":")[0] for line in out} == {seed_line}, out
