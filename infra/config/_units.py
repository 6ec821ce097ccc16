"""Parsing of human-friendly durations ("30m", "24h", "30d") and sizes ("512MB", "1GB").

I/O-free and strict: anything that isn't clearly a duration or a size raises ``ValueError`` with a message
fit to show the user after the JSON path of the offending field.
"""

from __future__ import annotations

import json
import math
import re

__all__ = [
    "DURATION_FORMS",
    "DURATION_PATTERN",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
]

# Every spelling a duration's unit may take, case-insensitive; the one table config, @cached, Cache.set,
# wrap entries and the CLI's --ttl read (through parse_duration, or infra.cache.ttl.parse_ttl over it).
_DURATION_UNITS = {
    **dict.fromkeys(("ms", "msec", "msecs", "millisecond", "milliseconds"), 0.001),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), 7 * 86400.0),
}
DURATION_FORMS = (
    'seconds (30, 1.5) or a number with a unit: "500ms", "30s", "5 sec", "30m", "1 minute", "1h", "2 hours", '
    '"30d", "1w", or a sum such as "1h30m" / "1h 30m"'
)
_NUMBER = r"(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
# The same grammar as a JSON Schema (ECMA) pattern, for editors: no (?i) there, so each unit's letters are
# spelled as classes ("[mM][sS]"); config/perf_config.schema.json carries it.
_ANY_UNIT = "|".join(
    "".join(f"[{c}{c.upper()}]" for c in u) for u in sorted(_DURATION_UNITS, key=len, reverse=True)
)
DURATION_PATTERN = rf"^\s*(?:{_NUMBER}\s*|(?:{_NUMBER}\s*(?:{_ANY_UNIT})\s*)+)$"
_DURATION_PART = re.compile(rf"({_NUMBER})\s*([a-zA-Z]+)\s*")
_DURATION_TEXT = re.compile(rf"^\s*(?:{_NUMBER}\s*|(?:{_NUMBER}\s*[a-zA-Z]+\s*)+)$")
# Sizes use binary multiples (1KB = 1024 bytes), as SQLite, Redis and most caches do; "KiB" forms accepted.
_SIZE_UNITS = {
    "b": 1,
    "kb": 1024,
    "kib": 1024,
    "mb": 1024**2,
    "mib": 1024**2,
    "gb": 1024**3,
    "gib": 1024**3,
    "tb": 1024**4,
    "tib": 1024**4,
}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_duration(value: object) -> float:
    """Seconds from a number (seconds) or a string: ``"30"``, ``"500ms"``, ``"5 sec"``, ``"30m"``,
    ``"1 minute"``, ``"24h"``, ``"2 hours"``, ``"30 days"``, ``"1w"``, or a sum ``"1h30m"`` / ``"1h 30m"``
    (units case-insensitive; see ``_DURATION_UNITS`` for every spelling).

    Negative, NaN and infinite values are rejected: a TTL or timeout of -5 is always a mistake. 0 is
    accepted; what it means is the reader's (a cache TTL of 0: never expires).
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _duration_text(value)
    else:
        raise ValueError(f"expected a duration: {DURATION_FORMS}; got {_show(value)}")
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"expected a duration, got {_show(value)} (not finite)")
    if seconds < 0:
        raise ValueError(f"expected a duration of 0 or more, got {_show(value)}")
    return seconds


def _duration_text(text: str) -> float:
    if _DURATION_TEXT.match(text) is None:
        if text.strip().startswith("-"):
            raise ValueError(f"expected a duration of 0 or more, got {_show(text)}")
        raise ValueError(f"expected a duration: {DURATION_FORMS}; got {_show(text)}")
    parts = _DURATION_PART.findall(text)
    if not parts:  # a bare number: seconds
        return float(text)
    seconds = 0.0
    for number, unit in parts:
        scale = _DURATION_UNITS.get(unit.lower())
        if scale is None:
            raise ValueError(
                f"expected a duration: {DURATION_FORMS}; got {_show(text)} (unknown unit {unit!r})"
            )
        seconds += float(number) * scale
    return seconds


def parse_size(value: object) -> int:
    """Bytes from an integer or a string such as ``"512MB"``, ``"1GB"``, ``"8KB"`` (binary multiples)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected a size in whole bytes, got {_show(value)}")
        size = int(value)
    elif isinstance(value, str):
        match = _NUMBER_UNIT.match(value)
        unit = match.group(2).lower() if match else ""
        if not match or (unit and unit not in _SIZE_UNITS):
            raise ValueError(f'expected a size such as 1048576, "512KB", "64MB" or "1GB", got {_show(value)}')
        size = int(float(match.group(1)) * _SIZE_UNITS.get(unit, 1))
    else:
        raise ValueError(f'expected a size (bytes or a string like "64MB"), got {_show(value)}')
    if size < 0:
        raise ValueError(f"expected a size, got {_show(value)}")
    return size


def format_duration(seconds: float) -> str:
    """The shortest exact human form of a duration: 2592000 → "30d", 90 → "90s", 0.5 → "500ms"."""
    for unit in ("w", "d", "h", "m", "s"):
        scale = _DURATION_UNITS[unit]
        if seconds >= scale and (seconds / scale).is_integer():
            return f"{int(seconds / scale)}{unit}"
    if (seconds * 1000).is_integer():
        return f"{int(seconds * 1000)}ms"
    return f"{seconds}s"


def format_size(size: int) -> str:
    """The shortest exact human form of a size: 1073741824 → "1GB"."""
    for unit, scale in (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)
