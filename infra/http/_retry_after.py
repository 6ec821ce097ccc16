"""Parse how long a server asked us to wait: ``retry-after-ms``, ``Retry-After`` seconds or HTTP-date.

``retry-after-ms`` is not in an RFC but OpenAI- and Azure-style APIs send it with a finer grain than
Retry-After, so it wins when both are present. A date in the past, or 0, means "now".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timezone
from email.utils import parsedate_to_datetime

__all__ = ["parse_retry_after"]


def _parse_seconds(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf: ignore the header
        return None
    return max(0.0, seconds)


def parse_retry_after(
    get: Callable[[str], str | None], *, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds to wait according to the response headers, or None when they say nothing usable.

    ``get`` looks a header up case-insensitively (``Headers.get``); ``now`` is wall-clock time, used to
    turn an HTTP-date into a delay.
    """
    ms = get("retry-after-ms")
    if ms is not None:
        parsed = _parse_seconds(ms.strip())
        if parsed is not None:
            return parsed / 1000.0
    value = get("retry-after")
    if value is None:
        return None
    value = value.strip()
    seconds = _parse_seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # "-0000" dates parse naive; HTTP-dates are always UTC (RFC 9110 §5.6.7)
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now())
