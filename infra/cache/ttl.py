"""TTLs as the cache's API takes them: None (the namespace's), seconds, or a duration string."""

from __future__ import annotations

__all__ = ["parse_ttl"]


def parse_ttl(ttl: float | str | None, *, what: str = "ttl") -> float | None:
    """Seconds from a TTL as the API takes it: None (the namespace's TTL), seconds, or a duration string as
    config takes it (``"90s"``, ``"30m"``, ``"1h"``, ``"30d"``); 0 means "never expires".

    Raises ``ValueError`` naming ``what`` for anything else (negative, NaN, a bool, an unknown unit), so a
    bad TTL fails where it is written (``@cached(ttl=...)`` at decoration), never after the work is done.
    """
    if ttl is None or (type(ttl) is float and ttl >= 0.0):  # (inf: never expires, as 0)
        return ttl
    if type(ttl) is int and ttl >= 0:
        return float(ttl)
    from infra.config._units import parse_duration  # (imports infra.config: only for strings and errors)

    try:
        return parse_duration(ttl)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
