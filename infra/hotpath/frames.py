"""Precomputed JSON envelopes for streamed audio chunks (seed 000, Task 2).

A voice pipeline sends ~31 chunks a second, each ``json.dumps({..static fields.., "audio": b64})``.
Only the base64 payload changes, and base64's alphabet needs no JSON escaping, so the text around
it can be computed once: ``prefix + b64(chunk) + suffix``. The template checks at construction that
its output equals compact ``json.dumps`` of the full dict byte for byte.

Once ``json.dumps`` is gone, base64 itself is ~80% of what is left: the stdlib's ``binascii`` encodes
~1 byte per step. ``pybase64`` (the ``hotpath`` extra; SIMD, with a portable C fallback of its own)
encodes a 1 KB chunk ~7x faster and returns ``str`` directly, so it is used when installed; without it
the template falls back to ``binascii`` with the same output (the construction check proves both).
"""

from __future__ import annotations

import json
import secrets
from binascii import b2a_base64
from collections.abc import Callable, Mapping

__all__ = ["SIMD_BASE64", "AudioFrameTemplate"]

_b64: Callable[[bytes], bytes] | None
_b64_str: Callable[[bytes], str] | None
try:  # SIMD base64 (optional): same bytes as binascii, ~7x faster on 1 KB
    from pybase64 import b64encode as _b64
    from pybase64 import b64encode_as_string as _b64_str
except ImportError:  # pragma: no cover - exercised by test_the_binascii_fallback_gives_the_same_output
    _b64 = _b64_str = None

#: True when templates encode with pybase64 (SIMD), False when they fall back to binascii.
SIMD_BASE64 = _b64 is not None

_COMPACT = (",", ":")
_join_str = "".join
_join_bytes = b"".join
# Covers every byte value and every base64 padding length (len % 3 == 0, 1, 2).
_PROBES = (b"", b"\x00", b"\xff\xfe", bytes(range(256)), bytes(range(255, -1, -1)) * 3 + b"\x01")


class AudioFrameTemplate:
    """Encode audio chunks into a fixed JSON envelope without re-serialising the static fields.

    ``fields`` holds the static fields in the order they are sent. If it contains ``audio_field``,
    that key keeps its position (its value is ignored); otherwise the audio field goes last. The
    output equals ``json.dumps({**fields, audio_field: base64(chunk)}, separators=(",", ":"),
    ensure_ascii=ensure_ascii)``; a field set that can't be templated (a value json can't encode)
    raises ``TypeError``/``ValueError`` here, not on the hot path.

    ``encode(chunk)`` returns ``str`` (a WebSocket text frame), or ``bytes`` when ``as_bytes=True``
    (UTF-8 JSON, for transports that take bytes). ``encode_str``/``encode_bytes`` are the typed forms.
    """

    __slots__ = (
        "_bprefix",
        "_bsuffix",
        "_codec",
        "_prefix",
        "_suffix",
        "as_bytes",
        "audio_field",
        "ensure_ascii",
        "fields",
    )

    def __init__(
        self,
        fields: Mapping[str, object],
        audio_field: str,
        *,
        as_bytes: bool = False,
        ensure_ascii: bool = True,
    ) -> None:
        if not isinstance(audio_field, str):
            raise TypeError(f"audio_field must be a str, not {type(audio_field).__name__}")
        self.fields: dict[str, object] = dict(fields)
        self.audio_field = audio_field
        self.as_bytes = as_bytes
        self.ensure_ascii = ensure_ascii
        # A marker that can't occur in the rest of the document: split the dumped text around it.
        marker = "__audio_" + secrets.token_hex(16) + "__"
        doc = dict(self.fields)
        doc[audio_field] = marker
        text = json.dumps(doc, separators=_COMPACT, ensure_ascii=ensure_ascii)
        quoted = '"' + marker + '"'
        if text.count(quoted) != 1:  # pragma: no cover - 128 random bits
            raise ValueError("could not place the audio field in the template")
        before, after = text.split(quoted)
        self._prefix = before + '"'
        self._suffix = '"' + after
        self._bprefix = self._prefix.encode("utf-8")
        self._bsuffix = self._suffix.encode("utf-8")
        # ASCII envelopes (always, with ensure_ascii=True) take the faster ASCII decoder.
        self._codec = "ascii" if (self._prefix + self._suffix).isascii() else "utf-8"
        for probe in _PROBES:
            self._check(probe)

    def _check(self, chunk: bytes) -> None:
        doc = dict(self.fields)
        doc[self.audio_field] = b2a_base64(chunk, newline=False).decode("ascii")
        want = json.dumps(doc, separators=_COMPACT, ensure_ascii=self.ensure_ascii)
        if self.encode_str(chunk) != want or self.encode_bytes(chunk) != want.encode("utf-8"):
            raise ValueError(f"AudioFrameTemplate output differs from json.dumps for fields {list(doc)}")

    def encode_str(self, chunk: bytes) -> str:
        """The full JSON text for ``chunk`` as ``str``."""
        if _b64_str is not None:
            return _join_str((self._prefix, _b64_str(chunk), self._suffix))
        # binascii: one join and one decode, two copies of the payload instead of the three that
        # prefix + b64.decode() + suffix makes.
        data = _join_bytes((self._bprefix, b2a_base64(chunk, newline=False), self._bsuffix))
        return data.decode(self._codec)

    def encode_bytes(self, chunk: bytes) -> bytes:
        """The full JSON text for ``chunk`` as UTF-8 ``bytes`` (no str round trip)."""
        if _b64 is not None:
            return _join_bytes((self._bprefix, _b64(chunk), self._bsuffix))
        return _join_bytes((self._bprefix, b2a_base64(chunk, newline=False), self._bsuffix))

    def encode(self, chunk: bytes) -> str | bytes:
        """``encode_bytes(chunk)`` when the template was built with ``as_bytes=True``, else ``encode_str``."""
        return self.encode_bytes(chunk) if self.as_bytes else self.encode_str(chunk)

    @property
    def prefix(self) -> str:
        """The JSON text before the base64 payload (ends with the opening quote)."""
        return self._prefix

    @property
    def suffix(self) -> str:
        """The JSON text after the base64 payload (starts with the closing quote)."""
        return self._suffix

    def __repr__(self) -> str:
        return f"AudioFrameTemplate(fields={list(self.fields)!r}, audio_field={self.audio_field!r})"
