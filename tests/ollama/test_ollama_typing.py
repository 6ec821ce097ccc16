"""The layered verbs are typed (issue 19): the official signatures plus ``profile`` and ``cache``, so a
misspelled keyword fails ``mypy --strict`` and a reply has its official type (as stamina's tests/typing)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

USE = """
from infra.ollama import AsyncOptimizedOllama, OptimizedOllama


async def main() -> None:
    llm = OptimizedOllama()
    r = llm.generate(model="m", prompt="p", profile="stage1", cache=False)
    reveal_type(r)
    for part in llm.chat("m", [{"role": "user", "content": "x"}], stream=True):
        reveal_type(part)
    llm.embed("m", ["a", "b"], cache=True)
    a = AsyncOptimizedOllama()
    reveal_type(await a.chat("m", [], options={"temperature": 0}))
    llm.generate(model="m", promt="p")  # misspelled
    await a.embed("m", "x", cach=True)  # misspelled
"""


def test_a_misspelled_keyword_to_a_verb_fails_type_checking(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    (tmp_path / "use.py").write_text(USE)
    os.environ.setdefault("MYPYPATH", str(ROOT))
    out, err, _ = api.run(
        ["--strict", "--no-error-summary", "--cache-dir", str(ROOT / ".mypy_cache"), str(tmp_path / "use.py")]
    )
    lines = [line.split("use.py:", 1)[1] for line in out.splitlines() if "use.py:" in line]
    notes = [line for line in lines if ": note: Revealed type" in line]
    errors = sorted({int(line.split(":", 1)[0]) for line in lines if ": error:" in line})
    misspelled = [n for n, line in enumerate(USE.splitlines(), 1) if "# misspelled" in line]
    assert errors == misspelled, out + err
    assert "ollama._types.GenerateResponse" in notes[0], notes
    assert "ollama._types.ChatResponse" in notes[1] and "ollama._types.ChatResponse" in notes[2], notes
