"""What every settings section shares: a repr that hides secrets, a JSON-ready ``to_dict``, redaction."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from infra.config._spec import section_fields

__all__ = ["Section", "loading", "redact_url"]

#: True while the loader builds sections from values it has checked already (``loading()``)
_LOADING: ContextVar[bool] = ContextVar("infra_config_loading", default=False)


@contextmanager
def loading() -> Iterator[None]:
    """Sections built inside are taken as given: the loader checked (and normalised) every value itself and
    collects the problems it finds rather than raising on the first section."""
    token = _LOADING.set(True)
    try:
        yield
    finally:
        _LOADING.reset(token)


_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*:)[^@/]*@")
#: a password passed as a parameter: ``?password=`` / ``&sslpassword=`` in a URL's query (libpq and asyncpg
#: read both), or ``password=...`` in a libpq key/value DSN (quoted or not)
_PASSWORD_PARAM = re.compile(
    r"(?P<head>(?:^|[?&;\s])(?:ssl)?pass(?:word|wd)?\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|[^&#;\s]*)",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """Hide every password in a DSN / URL: ``postgresql://u:secret@h/db`` → ``postgresql://u:***@h/db``,
    ``...?password=secret&x=1`` → ``...?password=***&x=1``, ``host=h password=secret`` →
    ``host=h password=***``; anything else unchanged."""
    url = _PASSWORD_IN_URL.sub(r"\g<head>***@", url)
    return _PASSWORD_PARAM.sub(r"\g<head>***", url)


class Section:
    """Shared behaviour of every section: a repr that hides secrets, and a JSON-ready ``to_dict``."""

    __slots__ = ()

    def __post_init__(self) -> None:
        """A section built in code (``HttpConfig(timeout={"connect": "2s"})``) is checked and normalised by
        its fields' Specs exactly as the loader checks a file: durations and sizes read from strings, maps
        frozen, nested dicts built into their sections, then the cross-field rules of ``problems()``. One
        ConfigError names every problem by its JSON path (``http.timeout.connect``)."""
        if not _LOADING.get():
            from infra.config._build import check_section

            check_section(self)

    def problems(self) -> list[tuple[str, str]]:
        """Rules between fields (each field already valid on its own), as ``(field, message)``; none here."""
        return []

    def __repr__(self) -> str:
        parts = []
        for name, spec in section_fields(type(self)):
            value = getattr(self, name)
            if spec.secret and isinstance(value, str):
                value = redact_url(value)
            parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def to_dict(self, *, redact: bool = True) -> dict[str, object]:
        """Plain JSON types: sections become dicts, durations stay seconds, secrets redacted by default."""
        out: dict[str, object] = {}
        for name, spec in section_fields(type(self)):
            out[name] = _plain(getattr(self, name), redact=redact, secret=spec.secret)
        return out


def _plain(value: object, *, redact: bool, secret: bool = False) -> object:
    if isinstance(value, Section):
        return value.to_dict(redact=redact)
    if isinstance(value, Mapping):
        return {k: _plain(v, redact=redact) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v, redact=redact) for v in value]
    if redact and secret and isinstance(value, str):
        return redact_url(value)
    return value


# the name the sections were written with
_Section = Section
