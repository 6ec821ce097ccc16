"""Test servers and stubs for users' tests, our tests and the benchmarks (imported by path, lazily).

``from infra.testing.fault_server import FaultServer`` : an aiohttp server on 127.0.0.1 that injects
HTTP faults (503 / 429 with Retry-After, resets, slow first byte, truncated bodies, stalled streams).
Nothing is imported here, so ``import infra.testing`` stays free of aiohttp.
"""
