"""The Redis backend's background thread: the pub/sub listener that keeps this process's generations
current and calls the push callbacks (reconnecting with backoff), and the periodic byte-cap pass.
``RedisListener`` is a base of ``RedisBackend``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from infra.cache.backends.base import FORKS, deliver_push
from infra.cache.backends.redis.housekeeping import RedisHousekeeping
from infra.cache.backends.redis.layout import redis_module
from infra.errors import CacheError

__all__ = ["RedisListener"]

log = logging.getLogger("infra.cache")


class RedisListener(RedisHousekeeping):
    """Pub/sub listener and housekeeping thread of ``RedisBackend`` (which sets the state below)."""

    _fork: int
    _closed: bool
    _lock: threading.Lock
    _stop: threading.Event
    _thread: threading.Thread | None
    _interval: float
    _listen_wanted: bool
    _listen_epoch: int
    _callbacks: list[Callable[[str, int], None]]
    _change_callbacks: list[Callable[[str, int], None]]

    if TYPE_CHECKING:

        def _sync_client(self) -> Any: ...

        def _admin_client(self) -> Any: ...

    def _start_thread(self) -> None:
        if self._thread is not None or self._closed:
            return
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._background, name="infra-cache-redis", daemon=True)
            self._thread.start()

    def _background(self) -> None:
        redis = redis_module()
        delay = 0.05
        next_maint = time.monotonic() + self._interval
        pubsub: Any = None
        while not self._stop.is_set():
            try:
                if self._listen_wanted and pubsub is None:
                    pubsub = self._admin_client().pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(self._channel)
                    self._listen_epoch += 1
                    self._listening = True
                    delay = 0.05
                if pubsub is not None:
                    msg = pubsub.get_message(timeout=0.5)
                    if msg is not None and msg.get("type") == "message":
                        self._on_message(msg["data"])
                else:
                    self._stop.wait(0.5)
                if time.monotonic() >= next_maint:
                    next_maint = time.monotonic() + self._interval
                    if self._max_bytes or self._ns_caps:
                        with contextlib.suppress(CacheError):
                            self.maintain()
            except (redis.RedisError, OSError, CacheError, ValueError) as exc:
                log.debug("redis cache listener: %s", exc)
                self._listening = False
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
                    pubsub = None
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        if pubsub is not None:
            with contextlib.suppress(Exception):
                pubsub.close()

    def _on_message(self, data: bytes) -> None:
        deliver_push(data.decode("utf-8", "replace"), self._callbacks, self._change_callbacks, self._heard)

    def _heard(self, ns: str, gen: int) -> None:
        if gen > self._known.get(ns, -1):
            self._known[ns] = gen

    def on_invalidate(self, callback: Callable[[str, int], None]) -> None:
        """Call ``callback(namespace, generation)`` (on the backend's listener thread) for every invalidation
        any host makes, this one included."""
        self._callbacks.append(callback)
        with contextlib.suppress(CacheError):
            self._sync_client()

    def on_change(self, callback: Callable[[str, int], None]) -> None:
        """Call ``callback(namespace, change count)`` (on the listener thread) for every delete, clear and
        replacing set any host makes, this one included."""
        self._change_callbacks.append(callback)

    def push_state(self) -> int | None:
        if self._fork != FORKS[0]:
            # a forked child whose Cache answers from L1 might never call us otherwise: start its listener
            # now (Cache asks every 0.1 s)
            if self._callbacks and not self._closed:
                with contextlib.suppress(CacheError):
                    self._sync_client()
            return None
        return self._listen_epoch if self._listening else None
