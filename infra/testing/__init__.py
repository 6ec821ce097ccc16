"""Test doubles that speak real protocols on 127.0.0.1, for users' tests, our tests and the benchmarks.

* ``OllamaTestServer`` (``from infra.testing import OllamaTestServer``; defined in
  ``infra.testing.ollama_server`` with ``ServerSettings`` and ``Fault``): the Ollama API test server.
* ``infra.testing.fault_server.FaultServer``: an aiohttp server that injects HTTP faults (503 / 429 with
  Retry-After, resets before and after headers, slow first byte, truncated bodies, stalled streams,
  every k-th request failing); also runnable as ``python -m infra.testing.fault_server``.

Names load lazily (``infra._lazy``), so ``import infra.testing`` stays free of aiohttp until one is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra._lazy import lazy_exports

if TYPE_CHECKING:
    from infra.testing.ollama.sim import Fault as Fault
    from infra.testing.ollama.sim import ServerSettings as ServerSettings
    from infra.testing.ollama_server import OllamaTestServer as OllamaTestServer
else:
    __all__, __getattr__, __dir__ = lazy_exports(__name__)
