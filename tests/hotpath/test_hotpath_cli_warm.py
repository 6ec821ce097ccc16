"""``python -m infra warm``: fills the namespace from a file, skips cached items, progress on stderr
(tqdm optional), exit 0/1/2, JSON output; the cache is a real SQLite file under tmp_path."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from infra.cli import main


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    (tmp_path / "warm_target_mod.py").write_text(
        textwrap.dedent(
            """
            CALLS = []
            def synth(text):
                CALLS.append(text)
                if text == "boom":
                    raise RuntimeError("tts down")
                return ("AUDIO:" + text).encode()
            async def asynth(text):
                return text.upper()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "perf_config.json"
    config.write_text(
        json.dumps(
            {
                "cache": {"path": str(tmp_path / "cache.db")},
                "wrap": [{"target": "warm_target_mod:asynth", "namespace": "greetings"}],
            }
        )
    )
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("hello\n# a comment\n\ntake a breath\nhello\n")
    return {"config": str(config), "phrases": str(phrases), "db": str(tmp_path / "cache.db")}


def _cached(setup: dict[str, Any], namespace: str, item: str, fn: str = "synth") -> Any:
    """What the store holds under the key ``@cached(namespace=...)`` would look up for ``fn(item)``."""
    import warm_target_mod  # type: ignore[import-not-found]

    from infra.cache import Cache, CacheConfig, cached

    with Cache(CacheConfig(path=setup["db"]), export_metrics=False) as c:
        return c.get(namespace, cached(namespace=namespace)(getattr(warm_target_mod, fn)).cache_key(item))


def test_a_worker_using_cached_hits_what_warm_stored(setup: dict[str, Any]) -> None:
    """Main stored under ``make_key(namespace, item)``, which ``cached(namespace='tts')(synth)`` never
    looks up: the worker recomputed every warmed phrase."""
    import warm_target_mod

    from infra.cache import Cache, CacheConfig, cached

    argv = ["warm", "-f", setup["phrases"], "-n", "tts", "--call", "warm_target_mod:synth", "--no-progress"]
    assert main([*argv, "--config", setup["config"]]) == 0
    warm_target_mod.CALLS.clear()
    with Cache(CacheConfig(path=setup["db"]), export_metrics=False) as c:
        synthesize = cached(namespace="tts", cache=c)(warm_target_mod.synth)
        assert synthesize("hello") == b"AUDIO:hello"
        assert synthesize("take a breath") == b"AUDIO:take a breath"
    assert warm_target_mod.CALLS == []


def test_warm_fills_the_namespace_and_a_second_run_skips_everything(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["warm", "--file", setup["phrases"], "--namespace", "tts", "--call", "warm_target_mod:synth"]
    assert main([*argv, "--config", setup["config"]]) == 0
    out = capsys.readouterr().out
    assert "2 warmed, 0 already cached, 0 failed, of 2 items" in out
    assert _cached(setup, "tts", "take a breath") == b"AUDIO:take a breath"

    assert main([*argv, "--config", setup["config"], "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["namespace"] == "tts" and report["skipped"] == 2 and report["ok"] == 0


def test_failures_give_exit_status_1_and_are_listed(
    setup: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    phrases = tmp_path / "bad.txt"
    phrases.write_text("fine\nboom\n")
    rc = main(
        [
            "warm",
            "-f",
            str(phrases),
            "-n",
            "tts",
            "--call",
            "warm_target_mod:synth",
            "--config",
            setup["config"],
        ]
    )
    assert rc == 1
    assert "failed: 'boom': RuntimeError: tts down" in capsys.readouterr().out
    assert _cached(setup, "tts", "fine") == b"AUDIO:fine"


def test_function_comes_from_a_wrap_entry_with_the_namespace(setup: dict[str, Any]) -> None:
    rc = main(
        ["warm", "-f", setup["phrases"], "-n", "greetings", "--config", setup["config"], "--no-progress"]
    )
    assert rc == 0
    assert _cached(setup, "greetings", "hello", fn="asynth") == "HELLO"


def test_plain_progress_bar_without_tqdm(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    rc = main(
        [
            "warm",
            "-f",
            setup["phrases"],
            "-n",
            "tts",
            "--call",
            "warm_target_mod:synth",
            "--config",
            setup["config"],
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert "warm tts [" in err and "] 2/2" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--call", "warm_target_mod"], "module:function"),
        (["--call", "no_such_module_xyz:f"], "cannot import"),
        (["--call", "warm_target_mod:missing"], "no attribute"),
        ([], "nothing to call for namespace 'tts'"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_status_2(
    setup: dict[str, Any], extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["warm", "-f", setup["phrases"], "-n", "tts", "--config", setup["config"], *extra])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_missing_file_is_exit_status_2(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["warm", "-f", "/nonexistent/phrases.txt", "-n", "tts", "--config", setup["config"]]) == 2
    assert "cannot read --file" in capsys.readouterr().err
