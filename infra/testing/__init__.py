"""Test doubles that speak real protocols on 127.0.0.1, for users' tests, our tests and the benchmarks.

* ``infra.testing.ollama_server``: the Ollama API test server (and friends beside it).
* ``infra.testing.fault_server.FaultServer``: an aiohttp server that injects HTTP faults (503 / 429 with
  Retry-After, resets before and after headers, slow first byte, truncated bodies, stalled streams,
  every k-th request failing); also runnable as ``python -m infra.testing.fault_server``.

Nothing is imported here (each is imported by path), so ``import infra.testing`` stays free of aiohttp.
"""
