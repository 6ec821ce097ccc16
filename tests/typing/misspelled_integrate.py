"""``enable()``'s handle and the Ollama transport: misread results are mypy errors (see test_typing.py)."""

from __future__ import annotations

from infra.cache import Cache
from infra.integrate import CachedOllamaTransport, IntegrationHandle


def misread(handle: IntegrationHandle, transport: CachedOllamaTransport) -> None:
    handle.as_dict()["metric_url"]  # type: ignore[typeddict-item]
    transport.cache().gett("ns", "k")  # type: ignore[attr-defined]


def well_typed_calls_stay_clean(handle: IntegrationHandle, transport: CachedOllamaTransport) -> None:
    """No ignore here: these must type-check as written."""
    url: str | None = handle.as_dict()["metrics_url"]
    wrapped: list[str] = handle.as_dict()["wrapped"]
    cache: Cache = transport.cache()
    del url, wrapped, cache
