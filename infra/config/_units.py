"""Parsing of human-friendly durations ("30m", "24h", "30d") and sizes ("512MB", "1GB").

I/O-free and strict: anything that isn't clearly a duration or a size raises ``ValueError`` with a message
fit to show the user after the JSON path of the offending field.
"""

from __future__ import annotations

import json
import math
import re

__all__ = ["format_duration", "format_size", "parse_duration", "parse_size"]

_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
}
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
    """Seconds from a number or a string such as ``"500ms"``, ``"30s"``, ``"30m"``, ``"24h"``, ``"30d"``.

    Negative, NaN and infinite values are rejected: a TTL or timeout of -5 is always a mistake.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        match = _NUMBER_UNIT.match(value)
        unit = match.group(2).lower() if match else ""
        if not match or (unit and unit not in _DURATION_UNITS):
            raise ValueError(
                f'expected a duration such as 30, "500ms", "30s", "30m", "24h" or "30d", got {_show(value)}'
            )
        seconds = float(match.group(1)) * _DURATION_UNITS.get(unit, 1.0)
    else:
        raise ValueError(f'expected a duration (seconds or a string like "30m"), got {_show(value)}')
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"expected a duration, got {_show(value)}")
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
