"""What ``OptimizedOllama`` and ``AsyncOptimizedOllama`` share that involves no awaiting: construction from
settings (default: perf_config), ``from_config``, ``client``, ``cache_stats`` and the memo key of a call.

A mixin placed before the official base (``class OptimizedOllama(LayerMixin, ollama.Client)``), so its
``__init__`` computes the layer's arguments and hands the rest to the official constructor.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ._core import ClientCore, settings_from
from .settings import OllamaSettings

__all__ = ["LayerMixin"]

_L = TypeVar("_L", bound="LayerMixin")


class LayerMixin:
    """Takes what the official client takes (``host``, ``headers``, ``timeout``, httpx keywords) plus
    ``settings`` (default: perf_config's ``ollama`` section, read now) and ``cache`` (default:
    ``infra.cache.get_cache()``). With the layer on, ``host`` defaults to ``$OLLAMA_HOST`` or the configured
    host and ``timeout`` to the configured one (the official default is none)."""

    settings: OllamaSettings
    _core: ClientCore
    _book_host: str
    _client: Any

    def __init__(
        self,
        host: str | None = None,
        *,
        settings: OllamaSettings | None = None,
        cache: Any = None,
        **kwargs: Any,
    ) -> None:
        s = settings if settings is not None else settings_from(None)
        core = ClientCore(s, cache)
        if s.enabled:
            host = host or core.host
            if "timeout" not in kwargs:
                kwargs["timeout"] = core.httpx_timeout()
        super().__init__(host, **kwargs)  # type: ignore[call-arg]  # the official client is next in the MRO
        self.settings = s
        self._core = core
        self._book_host = str(self._client.base_url)

    @classmethod
    def from_config(cls: type[_L], config: Any = None, **kwargs: Any) -> _L:
        """Built from ``PerfConfig.ollama`` (``infra.config.get_config()`` when ``config`` is None)."""
        return cls(settings=settings_from(config), **kwargs)

    @property
    def client(self: _L) -> _L:
        """This client (kept for code written when the layer wrapped an official client)."""
        return self

    def cache_stats(self) -> dict[str, dict[str, int]]:
        """Cache hits and misses per operation (generate, chat, embed: per item, embeddings) so far."""
        return self._core.cache_stats()
