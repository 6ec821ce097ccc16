"""Request identity helpers shared by both clients: idempotency keys and header lookups."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_HEADERS", "IDEMPOTENCY_KEY", "check_headers", "prepare_headers"]

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


# aiohttp's rule (http_writer._safe_header, RFC 9110 5.5): no control character but HTAB in a name or value.
_forbidden = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]").search


def check_headers(headers: Mapping[str, Any]) -> None:
    """Refuse a header name or value with a CR, LF, NUL or other control character (but tab), as aiohttp
    does: ValueError, before any try, on every backend. httpx raised LocalProtocolError mid-try instead,
    which read as a connect error: retried, and counted against the origin's breaker. The message names
    the header, never its value (an API key read with its trailing newline is a secret)."""
    for name, value in headers.items():
        if value.__class__ is str and name.__class__ is str and value.isprintable() and name.isprintable():
            continue  # the common case, decided in C: no control character (nor tab, nor other oddity)
        _check_header(name, value)


def _check_header(name: object, value: object) -> None:
    if isinstance(name, str) and _forbidden(name) is not None:
        raise ValueError(
            f"Forbidden control character detected in header name {name!r}. "
            "Potential header injection attack."
        )
    if isinstance(value, str) and _forbidden(value) is not None:
        raise ValueError(
            f"Forbidden control character (CR, LF, NUL, ...) detected in the value of header {name!r} "
            "(value not shown). Potential header injection attack: strip it (a key read from a file "
            "keeps its trailing newline)."
        )


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
    request retryable. A name or value with a control character raises ValueError (``check_headers``).
    """
    if headers:
        check_headers(headers)
    if headers and _find(headers, IDEMPOTENCY_KEY) is not None:
        return headers, True
    if idempotent:
        out = dict(headers) if headers else {}
        out[IDEMPOTENCY_KEY] = uuid.uuid4().hex
        return out, True
    return headers, False
