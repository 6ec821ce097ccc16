"""``cache stats|clear|vacuum|inspect``: wired through register(subparsers) exactly as infra.cli does."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from infra.cache import Cache, CacheConfig
from infra.cli import cache as cli_cache


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="infra")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--config")
    sub = parser.add_subparsers(dest="command")
    cli_cache.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def config(tmp_path: Path) -> str:
    db = tmp_path / "store" / "cache.db"
    cfg = tmp_path / "perf_config.json"
    cfg.write_text(json.dumps({"cache": {"path": str(db)}}))
    c = Cache(CacheConfig(path=str(db)))
    c.set("inference", "a" * 64, "hello")
    c.set("inference", "b" * 64, "world", ttl=0.001)
    c.set("embeddings", "e", [0.5] * 10)
    c.close()
    return str(cfg)


def test_stats_json(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["cache", "stats", "--json", "--config", config]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["by_type"] == {"embeddings": 1, "inference": 2}
    assert out["total_bytes"] == 5 + 5 + 80


def test_stats_human(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--config", config, "cache", "stats"]) == 0
    text = capsys.readouterr().out
    assert "inference" in text and "3 entries" in text


def test_inspect_lists_entries_without_values(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["cache", "inspect", "--namespace", "inference", "--json", "--config", config]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["key"] for r in rows} <= {"a" * 64, "b" * 64} and rows
    assert all(r["codec_name"] == "str" and "payload" not in r for r in rows)
    assert _run(["cache", "inspect", "-k", "1", "--config", config]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2  # header + one row


def test_clear_namespace_then_all(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["cache", "clear", "--namespace", "embeddings", "--json", "--config", config]) == 0
    assert json.loads(capsys.readouterr().out) == {"removed": 1, "namespace": "embeddings"}
    assert _run(["cache", "clear", "--config", config]) == 0
    assert "removed 2 entries" in capsys.readouterr().out


def test_vacuum_purges_expired(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["cache", "vacuum", "--json", "--config", config]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["purged"] == 1


def test_bad_limit_is_a_usage_error(config: str) -> None:
    with pytest.raises(SystemExit) as exc:
        _run(["cache", "inspect", "--limit", "0", "--config", config])
    assert exc.value.code == 2


def test_unopenable_store_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "notadir"
    bad.write_text("a file where the directory should be")
    cfg = tmp_path / "perf_config.json"
    cfg.write_text(json.dumps({"cache": {"path": str(bad / "cache.db")}}))
    assert _run(["cache", "stats", "--config", str(cfg)]) == 1
    assert "error:" in capsys.readouterr().err
