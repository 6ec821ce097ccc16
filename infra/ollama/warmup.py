"""Keep-warm loops: reload models before Ollama's keep_alive expires them (``/api/ps`` ``expires_at``).

Started by ``OptimizedOllama.keep_warm`` / ``AsyncOptimizedOllama.keep_warm``; each refresh is the client's
own warmup request (pinned runner options, so it never causes a reload of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import TYPE_CHECKING

from ._core import keep_alive_seconds

if TYPE_CHECKING:
    from .aclient import AsyncOptimizedOllama
    from .client import OptimizedOllama

__all__ = ["AsyncKeepWarm", "KeepWarm", "default_interval"]


def default_interval(keep_alive: object) -> float:
    """A quarter of keep_alive, between 1 s and 60 s (60 s when models are kept forever)."""
    ka = keep_alive_seconds(keep_alive)
    return max(1.0, min(60.0, ka / 4 if ka != float("inf") else 60.0))


class KeepWarm:
    """Background keep-warm: every ``interval`` seconds, reload any model whose /api/ps ``expires_at`` is
    less than two intervals away (or that isn't loaded). Bounded: ``stop()`` ends it within one interval."""

    def __init__(self, owner: OptimizedOllama, models: list[str], *, interval: float | None = None) -> None:
        self._owner = owner
        self.models = models
        self.interval = interval if interval is not None else default_interval(owner.settings.keep_alive)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ollama-keep-warm", daemon=True)
        self.refreshes = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        owner = self._owner
        while not self._stop.is_set():
            try:
                loaded = {m.model: m.expires_at for m in owner.client.ps().models}
                now = time.time()
                for model in self.models:
                    exp = loaded.get(model) or loaded.get(f"{model}:latest")
                    if exp is None or exp.timestamp() - now < 2 * self.interval:
                        owner._warm_one(model, None)
                        self.refreshes += 1
            except Exception as exc:
                owner._core.failure("keep_warm", exc)
            self._stop.wait(self.interval)


class AsyncKeepWarm:
    """The async keep-warm loop (see :class:`~infra.ollama.client.KeepWarm`); ``await stop()`` ends it."""

    def __init__(
        self, owner: AsyncOptimizedOllama, models: list[str], *, interval: float | None = None
    ) -> None:
        self._owner = owner
        self.models = models
        self.interval = interval if interval is not None else default_interval(owner.settings.keep_alive)
        self._task: asyncio.Task[None] | None = None
        self.refreshes = 0

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        owner = self._owner
        while True:
            try:
                loaded = {m.model: m.expires_at for m in (await owner.client.ps()).models}
                now = time.time()
                for model in self.models:
                    exp = loaded.get(model) or loaded.get(f"{model}:latest")
                    if exp is None or exp.timestamp() - now < 2 * self.interval:
                        await owner._warm_one(model, None)
                        self.refreshes += 1
            except Exception as exc:
                owner._core.failure("keep_warm", exc)
            await asyncio.sleep(self.interval)
