"""Route code that uses the official names through the layer: ``ollama.Client``, ``ollama.AsyncClient`` and
the module-level functions (``ollama.chat``, ``ollama.generate``, ``ollama.embed``, ...), reversibly::

    import infra.ollama
    routing = infra.ollama.route_official()     # perf_config's ollama section
    from ollama import chat                     # now OptimizedOllama's chat
    ...
    routing.undo()                              # every name back to what it was

Also a context manager (``with infra.ollama.route_official(): ...``). For workers and frameworks that build
the official client themselves (LlamaIndex, LangChain's ``ChatOllama``, ollama-python's examples). Code that
imported a name before the call keeps its own reference: route first, then import.
``ollama._client.Client`` (the module, not the package) is left alone: it is the classes' base.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from infra._closing import Closing
from infra.config.sections.ollama import OllamaConfig

from .aclient import AsyncOptimizedOllama
from .client import OptimizedOllama

if TYPE_CHECKING:
    from infra.cache import Cache

__all__ = ["MODULE_FUNCTIONS", "Routing", "route_official"]

#: The package-level functions ollama-python binds to its default client (``ollama/__init__.py``).
MODULE_FUNCTIONS = (
    "generate",
    "chat",
    "embed",
    "embeddings",
    "pull",
    "push",
    "create",
    "delete",
    "list",
    "copy",
    "show",
    "ps",
    "web_search",
    "web_fetch",
    "systemone",
)
_MISSING = object()
_lock = threading.Lock()


class Routing(Closing):
    """What :func:`route_official` replaced; ``undo()`` puts it back (idempotent).

    With the layer or its ``ollama`` part off nothing is replaced: ``client`` is None, ``off_reason`` says
    why, ``undo()`` does nothing and ``report()`` says so."""

    def __init__(
        self, client: OptimizedOllama | None, saved: dict[str, object], *, off_reason: str | None = None
    ) -> None:
        self.client = client  #: the routed default client behind the module-level functions (None: off)
        self._saved = saved
        self.active = client is not None
        self.off_reason = off_reason

    def report(self) -> str:
        """One line: what is routed, or why nothing is."""
        if self.client is None:
            return (
                f"ollama routing: nothing routed ({self.off_reason}); ollama.Client, ollama.AsyncClient "
                "and the module-level functions are the official ones"
            )
        state = "routed" if self.active else "undone"
        return (
            f"ollama routing: {state}: ollama.Client, ollama.AsyncClient and {len(MODULE_FUNCTIONS)} "
            f"module-level functions through OptimizedOllama ({self.client.base_url})"
        )

    def undo(self) -> None:
        """Restore every name this routing replaced; close the routed default client."""
        import ollama

        if self.client is None:
            return  # nothing was replaced
        with _lock:
            if not self.active:
                return
            self.active = False
            for name, value in self._saved.items():
                if value is _MISSING:
                    ollama.__dict__.pop(name, None)
                else:
                    setattr(ollama, name, value)
        self.client.close()

    def close(self) -> None:
        """``undo()``: what leaving a ``with route_official(...)`` block does."""
        self.undo()

    def __repr__(self) -> str:
        if self.client is None:
            return f"<Routing off: {self.off_reason}>"
        return f"<Routing {'active' if self.active else 'undone'} host={self.client.base_url}>"


def route_official(*, settings: OllamaConfig | None = None, cache: Cache | None = None) -> Routing:
    """Make ``ollama.Client`` / ``ollama.AsyncClient`` the layer's classes and bind the module-level functions
    to one :class:`OptimizedOllama` (host from ``$OLLAMA_HOST`` or settings, as the official default client).

    ``settings`` default to perf_config's ``ollama`` section. With the layer off (``PERF_ENABLED=0``,
    ``enabled: false``) or ``ollama.enabled`` false, nothing is touched: the official names stay, and the
    :class:`Routing` returned is a no-op whose ``report()`` says why. Otherwise ``undo()`` restores the
    previous names (routings nest).
    """
    import ollama

    if settings is None:
        from infra.config import get_config

        config = get_config()
        reason = config.switched_off_by("ollama")
        if reason is not None:
            return Routing(None, {}, off_reason=reason)
    elif not settings.enabled:
        return Routing(None, {}, off_reason="the OllamaConfig given is disabled (enabled=False)")
    client = OptimizedOllama(settings=settings, cache=cache)
    names = ("Client", "AsyncClient", "_client", *MODULE_FUNCTIONS)
    with _lock:
        saved = {name: ollama.__dict__.get(name, _MISSING) for name in names}
        ollama.Client = OptimizedOllama  # type: ignore[misc]
        ollama.AsyncClient = AsyncOptimizedOllama  # type: ignore[misc]
        ollama._client = client  # the package's default-client attribute
        for name in MODULE_FUNCTIONS:
            if hasattr(client, name):
                setattr(ollama, name, getattr(client, name))
    return Routing(client, saved)
