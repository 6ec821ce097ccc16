"""The cache's public verbs are typed: a misspelled keyword to ``Cache`` or ``@cached`` fails mypy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

GOOD = """
from infra.cache import Cache, CacheConfig, cached

c = Cache(CacheConfig(backend="memory"), signing_key=b"k", export_metrics=False)
c.set("ns", "k", {"a": 1}, ttl="1h", cost=0.5)
v: object = c.get("ns", "k", default=None)
n: int = c.get_or_compute("ns", "k", lambda: 3, ttl=60.0)

@cached(namespace="inference", ttl="1h", version=2, key_attrs=["model"])
def f(prompt: str) -> str:
    return prompt

s: str = f("x")
"""

BAD = {
    "Cache(CacheConfig(), signing_kye=b'k')": "signing_kye",
    "Cache(CacheConfig()).set('ns', 'k', 1, tll=3)": "tll",
    "Cache(CacheConfig()).get_or_compute('ns', 'k', lambda: 1, tl=3)": "tl",
    "cached(namspace='x')": "namspace",
    "CacheConfig(memory_itmes=3)": "memory_itmes",
}


def _mypy(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    src = tmp_path / "use_cache.py"
    src.write_text(code)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", str(src)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
        timeout=300,
    )


def test_typed_calls_pass_and_misspelled_keywords_fail(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    ok = _mypy(tmp_path, GOOD)
    assert ok.returncode == 0, ok.stdout
    bad = _mypy(tmp_path, "from infra.cache import Cache, CacheConfig, cached\n" + "\n".join(BAD) + "\n")
    assert bad.returncode == 1
    for word in BAD.values():
        assert f'"{word}"' in bad.stdout, (word, bad.stdout)
