"""What ``OptimizedOllama`` and ``AsyncOptimizedOllama`` share that involves no awaiting: construction from
settings (default: perf_config's ``ollama`` section), ``client``, ``base_url``, ``runner_policy``,
``cache_stats``.

A mixin placed before the official base (``class OptimizedOllama(LayerMixin, ollama.Client)``), so its
``__init__`` computes the layer's arguments and hands the rest to the official constructor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from infra.config.sections.ollama import OllamaConfig

from ._core import ClientCore
from .warmup import default_interval

if TYPE_CHECKING:
    from infra.cache import Cache

    from .runner import RunnerPolicy

__all__ = ["LayerMixin", "configured_settings"]

_L = TypeVar("_L", bound="LayerMixin")


def configured_settings() -> OllamaConfig:
    """perf_config's ``ollama`` section (the master switch already applied by the loader)."""
    from infra.config import get_config

    return get_config().ollama


class LayerMixin:
    """Takes what the official client takes (``host``, ``headers``, ``timeout``, httpx keywords) plus
    ``settings`` (an :class:`~infra.config.OllamaConfig`; default: perf_config's ``ollama`` section, read now)
    and ``cache`` (default: ``infra.cache.get_cache()``). The settings may also come first, in the host's
    place: ``OptimizedOllama(config.ollama)``. With the layer on, the server is the ``host`` argument, else
    the section's host (set in code, or the file's, which ``$OLLAMA_HOST`` overrides in the loader), else
    ``$OLLAMA_HOST``, else the default (see ``_core.resolve_host``); ``timeout`` defaults to the configured
    one (the official default is none). The other keywords (``follow_redirects``, ``timeout``, ``headers``,
    httpx.Client's) go to the official constructor as given."""

    settings: OllamaConfig
    _core: ClientCore
    _client: Any

    def __init__(
        self,
        host: str | OllamaConfig | None = None,
        *,
        settings: OllamaConfig | None = None,
        cache: Cache | None = None,
        **kwargs: object,
    ) -> None:
        if isinstance(host, OllamaConfig):
            if settings is not None:
                raise TypeError("settings given twice (as the first argument and as settings=)")
            host, settings = None, host
        s = settings if settings is not None else configured_settings()
        core = ClientCore(s, cache)
        if s.enabled:
            host = host or core.host
            if "timeout" not in kwargs:
                kwargs["timeout"] = core.httpx_timeout()
        super().__init__(host, **kwargs)  # type: ignore[call-arg]  # the official client is next in the MRO
        self.settings = s
        self._core = core
        self._base_url = str(self._client.base_url)
        self._init_io()

    def _init_io(self) -> None:
        """The I/O side's own state (locks, semaphores, flights), made by each client."""

    @property
    def client(self: _L) -> _L:
        """This client (kept for code written when the layer wrapped an official client)."""
        return self

    @property
    def base_url(self) -> str:
        """The Ollama server this client talks to (its digests are booked under this URL)."""
        return self._base_url

    @property
    def runner_policy(self) -> RunnerPolicy:
        """The pinned runner options and profiles: what ``options`` each call really sends."""
        return self._core.policy

    def _interval(self, interval: float | None) -> float:
        """A keep-warm loop's interval: the one asked for, else derived from keep_alive."""
        return interval if interval is not None else default_interval(self.settings.keep_alive)

    def cache_stats(self) -> dict[str, dict[str, int]]:
        """Cache hits and misses per operation (generate, chat, embed: per item, embeddings) so far."""
        return self._core.cache_stats()
