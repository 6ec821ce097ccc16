"""The public surface of infra.metrics / infra.server, and that importing them stays light."""

from __future__ import annotations

import subprocess
import sys

import infra.metrics
import infra.server

HEAVY = ("aiohttp", "httpx", "ollama", "torch", "asyncpg", "redis", "numpy", "websockets", "asyncio")


def test_all_lists_exactly_the_public_names() -> None:
    for mod in (infra.metrics, infra.server):
        machinery = {"annotations", "TYPE_CHECKING", "Any", "lazy_exports"}  # the front door's own imports
        public = {n for n in dir(mod) if not n.startswith("_")} - machinery
        public = {n for n in public if not isinstance(getattr(mod, n), type(sys))}  # submodules aren't API
        assert set(mod.__all__) == public, mod.__name__


def test_importing_metrics_and_server_pulls_in_no_client_library_or_event_loop() -> None:
    code = (
        "import sys, infra.metrics, infra.metrics.exposition, infra.server\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
