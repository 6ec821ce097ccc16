"""Shared fixtures: the real services on 127.0.0.1, skipped with a reason where they don't run.

Under INFRA_REQUIRE_SERVICES=1 (CI) a missing service is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

POSTGRES_DSN = os.environ.get("INFRA_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("INFRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def need_service(name: str, available: bool, how: str) -> None:
    """Skip (or, under INFRA_REQUIRE_SERVICES=1, fail) when a service the test needs is missing."""
    if available:
        return
    reason = f"{name} is not available ({how})"
    if os.environ.get("INFRA_REQUIRE_SERVICES") == "1":
        pytest.fail(f"INFRA_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    need_service("PostgreSQL", _port_open("127.0.0.1", 5432), "nothing listens on 127.0.0.1:5432")
    return POSTGRES_DSN


@pytest.fixture(scope="session")
def redis_url() -> str:
    need_service("Redis", _port_open("127.0.0.1", 6379), "nothing listens on 127.0.0.1:6379")
    return REDIS_URL


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    need_service("Prometheus", path is not None, "no `prometheus` binary on PATH (Debian package prometheus)")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def chromium_bin() -> str:
    path = shutil.which("chromium")
    need_service("Chromium", path is not None, "no `chromium` on PATH (Debian package chromium)")
    assert path is not None
    return path
