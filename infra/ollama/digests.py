"""Model digests per Ollama host, shared by every client in the process (no I/O here).

A cache entry is tagged with the digest of the model that wrote it; a hit whose tag differs from the model's
current digest is a miss (the model was re-pulled or re-created). The digests come from one ``GET /api/tags``
per host per process, read by the client that first needs one - after its reply arrived (to tag what it
stores) or before it serves a hit (to check the tag) - never before a request, so a refused connection is
reported once, as the official client reports it. A model-changing call through the layer (pull, push,
create, copy, delete) forgets that host's listing; a failed read is retried after ``RETRY_AFTER_S``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

__all__ = ["BOOK", "RETRY_AFTER_S", "DigestBook"]

RETRY_AFTER_S = 60.0

log = logging.getLogger("infra.ollama")


class DigestBook:
    """``{host: {model: digest}}`` with the time of each failed read; thread-safe, never does I/O itself."""

    def __init__(self) -> None:
        self._hosts: dict[str, dict[str, str]] = {}
        self._failed: dict[str, float] = {}
        self._lock = threading.Lock()
        self.reads = 0  # listings applied (tests assert "at most once per host")

    def needs_read(self, host: str) -> bool:
        """True when ``host`` has no listing and no failed read in the last ``RETRY_AFTER_S``."""
        if host in self._hosts:
            return False
        failed = self._failed.get(host)
        return failed is None or time.monotonic() - failed >= RETRY_AFTER_S

    def digest(self, host: str, model: str) -> str | None:
        """The model's digest (``name`` or ``name:latest``), or None when unknown."""
        d = self._hosts.get(host)
        if not d:
            return None
        return d.get(model) or d.get(model if ":" in model else f"{model}:latest")

    def apply(self, host: str, listing: Any) -> None:
        """Record a ``ListResponse`` (or anything with ``.models`` of objects with ``model`` / ``digest``)."""
        out: dict[str, str] = {}
        for m in getattr(listing, "models", ()) or ():
            name, dig = getattr(m, "model", None), getattr(m, "digest", None)
            if name and dig:
                out[name] = dig
        with self._lock:
            self._hosts[host] = out
            self._failed.pop(host, None)
            self.reads += 1

    def failed(self, host: str, exc: BaseException | None = None) -> None:
        """A read of ``host``'s listing failed: retried after ``RETRY_AFTER_S`` (the call itself reports a
        down server; until then entries just can't be tagged)."""
        if exc is not None:
            log.debug("infra.ollama: reading model digests from %s failed: %r", host, exc)
        with self._lock:
            self._failed[host] = time.monotonic()

    def forget(self, host: str | None = None) -> None:
        """Drop one host's listing (all hosts when None): the next entry check reads /api/tags again."""
        with self._lock:
            if host is None:
                self._hosts.clear()
                self._failed.clear()
            else:
                self._hosts.pop(host, None)
                self._failed.pop(host, None)


#: The process-wide book every OptimizedOllama / AsyncOptimizedOllama shares.
BOOK = DigestBook()
