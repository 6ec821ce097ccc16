"""Fixtures for the example pipelines: the stub services (started once), the uncached baseline outputs
over 200 inputs with repeats, and an undo of whatever a test enabled."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from _examples_support import SCALE, inputs_with_repeats, run_enrichment, run_voice


@pytest.fixture(scope="session")
def servers() -> Iterator[Any]:
    from examples.stubs import ExampleServers

    srv = ExampleServers(scale=SCALE).start()
    previous = srv.apply_env()
    try:
        yield srv
    finally:
        srv.restore_env(previous)
        srv.stop()


@pytest.fixture(scope="session")
def inputs() -> list[str]:
    return inputs_with_repeats()


@pytest.fixture(scope="session")
def baseline(servers: Any, inputs: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Outputs of the untouched pipelines, no layer at all, over the same inputs."""
    from examples.enrichment.worker import EnrichmentWorker

    return {"enrichment": run_enrichment(EnrichmentWorker, inputs), "voice": run_voice(inputs)}


@pytest.fixture
def undo_all() -> Iterator[None]:
    """Whatever a test enabled is undone afterwards, so tests don't leak patches or caches."""
    yield
    from infra.integrate import active_handle

    h = active_handle()
    if h is not None:
        h.undo()
