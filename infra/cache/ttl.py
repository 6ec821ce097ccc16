"""TTLs as the cache's API takes them: None (the namespace's), seconds, or a duration string.

One rule everywhere (config fields, ``wrap`` entries, ``@cached(ttl=...)``, ``cached_class``,
``Cache.set``/``set_many``/``get_or_compute``, ``python -m infra warm --ttl``): a number is seconds, a string
is what ``infra.config.parse_duration`` reads (``"90s"``, ``"5 sec"``, ``"30m"``, ``"1 minute"``, ``"1h30m"``,
``"30 days"``, case-insensitive), and **0 means "never expires"** (as in memcached and aiocache; infinity
too). Negative, NaN, bools and unknown units are a ``ValueError`` naming the value and the accepted forms.
"""

from __future__ import annotations

__all__ = ["parse_ttl"]

# strings already read (a TTL string is written in code or config: a handful per process); bounded anyway
_STRINGS: dict[str, float] = {}
_STRINGS_MAX = 256


def parse_ttl(ttl: float | str | None, *, what: str = "ttl") -> float | None:
    """Seconds from a TTL as the API takes it: None (the namespace's TTL), seconds, or a duration string as
    config takes it (``"90s"``, ``"30m"``, ``"1h"``, ``"1h30m"``, ``"30 days"``); 0 means "never expires".

    Raises ``ValueError`` naming ``what`` for anything else (negative, NaN, a bool, an unknown unit), so a
    bad TTL fails where it is written (``@cached(ttl=...)`` at decoration), never after the work is done.
    None, a non-negative float or int and a string seen before return without a call (``Cache.set`` reads
    every call's TTL here).
    """
    if ttl is None or (type(ttl) is float and ttl >= 0.0):  # (inf: never expires, as 0)
        return ttl
    if type(ttl) is int and ttl >= 0:
        return float(ttl)
    if type(ttl) is str:
        seconds = _STRINGS.get(ttl)
        if seconds is not None:
            return seconds
    from infra.config import parse_duration  # (imports infra.config: only for new strings and errors)

    try:
        seconds = parse_duration(ttl)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if type(ttl) is str:
        if len(_STRINGS) >= _STRINGS_MAX:
            _STRINGS.clear()
        _STRINGS[ttl] = seconds
    return seconds
