"""The public surface of infra.cache: a curated __all__, and imports that stay light."""

from __future__ import annotations

import subprocess

import infra.cache
from tests.cache.conftest import PYTHON, subprocess_env


def test_all_names_resolve_and_are_unique() -> None:
    assert len(set(infra.cache.__all__)) == len(infra.cache.__all__)
    for name in infra.cache.__all__:
        assert getattr(infra.cache, name) is not None


def test_contract_names_other_engineers_use() -> None:
    from infra.cache import MISSING, Cache, cached, explain_key, get_cache, make_key

    assert callable(get_cache) and callable(cached) and callable(make_key) and callable(explain_key)
    assert not MISSING and repr(MISSING) == "MISSING"
    for method in (
        "get",
        "set",
        "delete",
        "get_or_compute",
        "get_many",
        "set_many",
        "invalidate",
        "get_stats",
    ):
        assert callable(getattr(Cache, method))
    for method in ("aget", "aset", "adelete", "aget_or_compute", "aget_many", "aset_many"):
        assert callable(getattr(Cache, method))


def test_import_pulls_in_no_heavy_dependency() -> None:
    code = (
        "import sys, infra.cache\n"
        "from infra.cache import get_cache, cached, make_key, Cache, MISSING\n"
        "import infra.cache.core, infra.cache.decorator, infra.cli.cache\n"
        "heavy = ['aiohttp', 'httpx', 'ollama', 'torch', 'asyncpg', 'redis', 'numpy', 'websockets',"
        " 'asyncio']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = subprocess_env()
    out = subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
