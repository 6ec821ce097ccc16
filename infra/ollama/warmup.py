"""Keep-warm loops: reload models before Ollama's keep_alive expires them (``/api/ps`` ``expires_at``).

Started by ``OptimizedOllama.keep_warm`` / ``AsyncOptimizedOllama.keep_warm``; each refresh is the client's
own warmup request (pinned runner options, so it never causes a reload of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Generic, TypeVar

from ._helpers import keep_alive_seconds

if TYPE_CHECKING:
    from ollama import ProcessResponse

__all__ = ["AsyncKeepWarm", "KeepWarm", "default_interval", "due"]


def default_interval(keep_alive: object) -> float:
    """A quarter of keep_alive, between 1 s and 60 s (60 s when models are kept forever)."""
    ka = keep_alive_seconds(keep_alive)
    return max(1.0, min(60.0, ka / 4 if ka != float("inf") else 60.0))


def due(models: list[str], loaded: Mapping[str, datetime | None], now: float, interval: float) -> list[str]:
    """The models to reload now: not loaded (by name or ``name:latest``), or expiring within two intervals."""
    out = []
    for model in models:
        exp = loaded.get(model) or loaded.get(f"{model}:latest")
        if exp is None or exp.timestamp() - now < 2 * interval:
            out.append(model)
    return out


def _expiries(ps: ProcessResponse) -> dict[str, datetime | None]:
    return {m.model or "": m.expires_at for m in ps.models}


_Ps = TypeVar("_Ps")
_Warmed = TypeVar("_Warmed")


class _Loop(Generic[_Ps, _Warmed]):
    """What both keep-warm loops hold: ``ps`` reads /api/ps, ``warm`` reloads one model, ``failed`` reports
    a failed round (the client's own methods, handed over by its ``keep_warm``), and the count of reloads."""

    def __init__(
        self,
        ps: Callable[[], _Ps],
        warm: Callable[[str], _Warmed],
        failed: Callable[[str, BaseException], None],
        models: list[str],
        *,
        interval: float,
    ) -> None:
        self._ps, self._warm, self._failed = ps, warm, failed
        self.models = models
        self.interval = interval
        self.refreshes = 0


class KeepWarm(_Loop["ProcessResponse", object]):
    """Background keep-warm: every ``interval`` seconds, reload any model whose /api/ps ``expires_at`` is
    less than two intervals away (or that isn't loaded). Bounded: ``stop()`` ends it within one interval."""

    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ollama-keep-warm", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for model in due(self.models, _expiries(self._ps()), time.time(), self.interval):
                    self._warm(model)
                    self.refreshes += 1
            except Exception as exc:
                self._failed("keep_warm", exc)
            self._stop.wait(self.interval)


class AsyncKeepWarm(_Loop["Awaitable[ProcessResponse]", Awaitable[object]]):
    """The async keep-warm loop (see :class:`KeepWarm`); ``await stop()`` ends it."""

    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                for model in due(self.models, _expiries(await self._ps()), time.time(), self.interval):
                    await self._warm(model)
                    self.refreshes += 1
            except Exception as exc:
                self._failed("keep_warm", exc)
            await asyncio.sleep(self.interval)
