"""PerfClient's attempt pieces: its timeouts (``timeouts``), how a failure is named
(``failure_of``), its slots and connection turn (``Held``), and a streamed body's reader (``SyncBody``),
under the idle timeout and the call's deadline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx

from infra.config.sections.http import TimeoutConfig
from infra.http._affinity import Affinity
from infra.http._body import Body
from infra.http._classify import FATAL, classify_httpx
from infra.http._core import DEADLINE, FIRST_BYTE, Failure
from infra.http._lease import SyncLease
from infra.http._routing import close_reset

__all__ = ["DEADLINE_SLACK", "Held", "SyncBody", "failure_of", "left", "timeouts"]

_monotonic = time.monotonic
# A read timeout this close to the deadline is the deadline's doing, not the first-byte limit's.
DEADLINE_SLACK = 0.002


def left(deadline_at: float | None, cap: float | None) -> float | None:
    if deadline_at is None:
        return cap
    left = max(0.0, deadline_at - _monotonic())
    return left if cap is None or left < cap else cap


class Held:
    """A call's slots (``SyncLease``) and its place on its origin's connections (``Affinity``), given back
    together, exactly once: the connection first, so a caller waiting for it is woken before the slots
    pass on."""

    __slots__ = ("_affinity", "_key", "_lease", "_streamed")

    def __init__(self, lease: SyncLease, affinity: Affinity) -> None:
        self._lease = lease
        self._affinity = affinity
        self._key: Any = None
        self._streamed = False

    def wait_turn(self, url: httpx.URL, timeout: float | None) -> None:
        self._key = self._affinity.enter(url, timeout)

    def streaming(self) -> None:
        self._affinity.streaming(self._key)
        self._streamed = True

    @property
    def released(self) -> bool:
        return self._lease.released

    def release(self) -> None:
        if self._lease.released:
            return
        try:
            if self._key is not None:
                self._affinity.leave(self._key, self._streamed)
                self._key = None
        finally:
            self._lease.release()


class SyncBody(Body):
    """Reads an httpx response body chunk by chunk; the read timeout becomes the idle timeout."""

    __slots__ = ("_first", "_iter")

    def __init__(
        self, resp: Any, lease: Held, idle: float | None, deadline_at: float | None, origin: str
    ) -> None:
        super().__init__(resp, lease, idle, deadline_at, origin)
        self._first = True
        self._iter: Iterator[bytes] = resp.iter_bytes()

    def next_chunk(self) -> bytes:
        if self.done:
            return b""
        if self._first:
            # httpcore takes the read timeout from request.extensions when the body starts (at the first
            # read), so switching it here from the first-byte limit to the idle limit gives streams their
            # own inter-chunk timeout. Later changes wouldn't be seen: the deadline is checked per chunk.
            self._first = False
            timeouts = self._resp.request.extensions.get("timeout")
            if isinstance(timeouts, dict):
                timeouts["read"] = left(self.deadline_at, self._idle)
        try:
            chunk = next(self._iter, b"")
        except Exception as exc:
            self.close()
            if isinstance(exc, httpx.ReadTimeout):
                expired = self.deadline_at is not None and _monotonic() >= self.deadline_at - DEADLINE_SLACK
                raise self.ran_out(expired) from exc
            raise self.broke(exc) from exc
        if not chunk:
            self.done = True
            self.close()
        elif self.deadline_at is not None and _monotonic() > self.deadline_at:
            self.close()
            raise self.ran_out(True)
        return chunk

    def close(self) -> None:
        if not self._lease.released:
            try:
                if self.done:
                    self._resp.close()
                else:  # httpcore's close alone would leave its HTTP/2 stream open (_routing._reset_orphans)
                    close_reset(self._resp)
            finally:
                self._lease.release()


def timeouts(deadline_at: float | None, t: TimeoutConfig) -> dict[str, float | None]:
    """An attempt's httpx timeouts: connect and first byte cut to what the deadline leaves (the deadline
    of a blocking call)."""
    first_byte = left(deadline_at, t.first_byte)
    return {"connect": left(deadline_at, t.connect), "read": first_byte, "write": first_byte, "pool": None}


def failure_of(exc: Exception, deadline_at: float | None) -> Failure | None:
    """Name an exception raised while sending or reading (None: not ours to name). A timeout this close to
    the deadline is the deadline's; a read timeout before it, the first-byte limit's."""
    if isinstance(exc, httpx.TimeoutException):
        if deadline_at is not None and _monotonic() >= deadline_at - DEADLINE_SLACK:
            return Failure(DEADLINE, exc)
        return Failure(
            FIRST_BYTE if isinstance(exc, httpx.ReadTimeout) else classify_httpx(exc) or FATAL, exc
        )
    kind = classify_httpx(exc)
    return None if kind is None else Failure(kind, exc)
