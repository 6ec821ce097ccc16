"""Seed 004's documented snippets run verbatim: the two monitoring one-liners and the /metrics route."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

CACHE_ONE_LINER = (
    "from infra.cache import get_cache; import json; print(json.dumps(get_cache().get_stats(), indent=2))"
)
METRICS_ONE_LINER = "from infra.metrics import get_metrics; import json; print(json.dumps(get_metrics().get_stats(), indent=2))"  # noqa: E501 - verbatim
FASTAPI_ROUTE = """
from infra.metrics import get_metrics
from infra.cache import get_cache

@app.get("/metrics")
def metrics():
    return {
        "performance": get_metrics().get_stats(),
        "cache": get_cache().get_stats()
    }
"""


@pytest.mark.parametrize("line", [CACHE_ONE_LINER, METRICS_ONE_LINER], ids=["cache", "metrics"])
def test_monitoring_one_liner_prints_json(line: str, tmp_path: Path) -> None:
    """`python -c "<the seed's line>"` from the project root exits 0 and prints a JSON object."""
    (tmp_path / "perf.json").write_text(json.dumps({"cache": {"path": str(tmp_path / "c.db")}}))
    env = {**os.environ, "PERF_CONFIG": str(tmp_path / "perf.json")}
    out = subprocess.run(
        [sys.executable, "-c", line],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert isinstance(json.loads(out.stdout), dict)


def test_cache_stats_have_the_seed_shape_after_cached_work(tmp_path: Path) -> None:
    """enabled, total_entries, total_bytes and by_type per namespace, as the seed's example output shows."""
    from infra.cache import Cache, CacheConfig

    cache = Cache(CacheConfig(path=str(tmp_path / "c.db")))
    try:
        cache.set("emotion_scoring", "k", {"top": "stress"})
        stats = cache.get_stats()
    finally:
        cache.close()
    assert stats["enabled"] is True and stats["total_entries"] == 1 and stats["total_bytes"] > 0
    assert stats["by_type"] == {"emotion_scoring": 1}


def test_fastapi_metrics_route_from_the_seed_runs_as_written(tmp_path: Path, monkeypatch: Any) -> None:
    fastapi = pytest.importorskip("fastapi")
    from infra.cache import reset_cache, set_cache
    from infra.config import reset_config

    (tmp_path / "perf.json").write_text(json.dumps({"cache": {"path": str(tmp_path / "c.db")}}))
    monkeypatch.setenv("PERF_CONFIG", str(tmp_path / "perf.json"))
    reset_config()
    previous = set_cache(None)
    try:
        _run_route(fastapi)
    finally:
        reset_cache()
        set_cache(previous)
        reset_config()


def _run_route(fastapi: Any) -> None:
    import httpx

    namespace: dict[str, Any] = {"app": fastapi.FastAPI()}
    exec(FASTAPI_ROUTE, namespace)
    import asyncio

    async def get() -> Any:
        transport = httpx.ASGITransport(app=namespace["app"])
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return (await client.get("/metrics")).json()

    body = asyncio.run(get())
    assert set(body) == {"performance", "cache"} and "by_type" in body["cache"]
