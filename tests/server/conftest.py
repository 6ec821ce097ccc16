"""Fixtures for the endpoint tests: a fresh registry with a few series."""

from __future__ import annotations

import pytest

from infra.metrics import MetricsRegistry


@pytest.fixture
def registry() -> MetricsRegistry:
    reg = MetricsRegistry()
    reg.counter("infra_cache_hits_total", "Cache hits.", ("namespace",)).labels("inference").inc(4)
    h = reg.histogram("infra_test_latency_seconds", "Test latency.", ("op",))
    for i in range(1, 1001):
        h.labels("uniform").observe(i / 1000)
    return reg
