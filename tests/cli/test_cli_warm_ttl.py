"""``python -m infra warm --ttl`` takes what every other TTL takes (seconds, "1h", "1h30m", "30 days"; 0:
never expires): main said ``expected seconds, got '1h'`` though the README says the config strings work."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from infra.cli import main


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    (tmp_path / "warm_ttl_mod.py").write_text(textwrap.dedent("def up(text):\n    return text.upper()\n"))
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "perf_config.json"
    config.write_text(json.dumps({"cache": {"path": str(tmp_path / "cache.db"), "ttl_jitter": 0}}))
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("hello\n")
    return {"config": str(config), "phrases": str(phrases), "db": str(tmp_path / "cache.db")}


def _warm(files: dict[str, str], ttl: str) -> int:
    argv = ["warm", "--config", files["config"], "-f", files["phrases"], "-n", "t", "--call"]
    return main([*argv, "warm_ttl_mod:up", f"--ttl={ttl}", "--no-progress", "--force"])


@pytest.mark.parametrize(
    ("ttl", "seconds"), [("1h", 3600), ("1h30m", 5400), ("30 days", 2592000), ("90", 90)]
)
def test_duration_strings_are_accepted_and_applied(files: dict[str, str], ttl: str, seconds: float) -> None:
    import warm_ttl_mod  # type: ignore[import-not-found]

    from infra.cache import Cache, CacheConfig, cached

    t0 = time.time()
    assert _warm(files, ttl) == 0
    with Cache(CacheConfig(path=files["db"]), export_metrics=False) as c:
        key = cached(namespace="t")(warm_ttl_mod.up).cache_key("hello")
        assert c.get("t", key) == "HELLO"
        (row,) = [r for r in c.backend.inspect("t") if r.key == key]
    assert row.expires_at is not None and abs(row.expires_at - (t0 + seconds)) < 60  # (ttl_jitter: 0 above)


def test_zero_never_expires(files: dict[str, str]) -> None:
    from infra.cache import Cache, CacheConfig

    assert _warm(files, "0") == 0
    with Cache(CacheConfig(path=files["db"]), export_metrics=False) as c:
        assert [r.expires_at for r in c.backend.inspect("t")] == [None]


@pytest.mark.parametrize("bad", ["5y", "-1h", "soon"])
def test_a_bad_ttl_is_exit_2_naming_the_value_and_the_forms(
    files: dict[str, str], bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _warm(files, bad)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--ttl: expected a duration" in err and bad in err
