"""Fixtures for the metrics tests: a fresh registry per test (never the process-wide one)."""

from __future__ import annotations

import pytest

from infra.metrics import MetricsRegistry


@pytest.fixture
def registry() -> MetricsRegistry:
    return MetricsRegistry()
