"""Request identity helpers shared by both clients: idempotency keys and header lookups."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_HEADERS", "IDEMPOTENCY_KEY", "prepare_headers"]

IDEMPOTENCY_KEY = "Idempotency-Key"


def _version() -> str:
    import infra

    return str(getattr(infra, "__version__", "0"))


#: Sent by every backend (aiohttp adds its own otherwise, httpx's transport none), so a server sees the
#: same request whichever client or protocol ran. A caller's header of the same name wins.
DEFAULT_HEADERS: dict[str, str] = {
    "User-Agent": f"perf-infra/{_version()}",
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
}


def _find(headers: Mapping[str, Any], name: str) -> str | None:
    low = name.lower()
    for k, v in headers.items():
        if k.lower() == low:
            return str(v)
    return None


def prepare_headers(
    headers: Mapping[str, str] | None, idempotent: bool
) -> tuple[Mapping[str, str] | None, bool]:
    """Return (headers to send, whether status / read failures may be retried).

    ``idempotent=True`` adds an Idempotency-Key when there is none; the same dict (so the same key) is
    sent on every attempt, which is what lets the server deduplicate. A caller-supplied key also makes the
    request retryable.
    """
    if headers and _find(headers, IDEMPOTENCY_KEY) is not None:
        return headers, True
    if idempotent:
        out = dict(headers) if headers else {}
        out[IDEMPOTENCY_KEY] = uuid.uuid4().hex
        return out, True
    return headers, False
