"""Value codecs: what a cached value becomes on disk, and back. Safe by default (no pickle).

Codec ids are one small int stored next to the payload: the low 6 bits pick the kind, two flag bits say
the payload is zlib-compressed (``FLAG_ZLIB``) or HMAC-signed (``FLAG_SIGNED``: the first 32 bytes are
HMAC-SHA256 over the codec id and the body, keyed by a secret from the environment).

Kinds:

* ``STR`` / ``BYTES``: the value itself, UTF-8 for ``str`` (the common LLM answer: no JSON quoting).
* ``JSON``: a value made only of JSON types (dict with str keys, list, str, int, finite float, bool, None):
  decoded by ``json.loads`` alone.
* ``TAGGED``: JSON with one-key ``{"$tag": ...}`` objects for what JSON can't say: tuple, bytes, set,
  frozenset, non-finite floats, dicts with non-str keys, datetime / date / time / timedelta, Decimal, UUID,
  complex, numpy arrays, and typed records: dataclasses, pydantic v2 models (the ``ollama`` response
  types and LangChain messages are such models), enums, NamedTuples, subclasses of str / int / float
  (kept as their base value), and types given to ``register_type``.
  Round trips are exact: a tuple comes back a tuple, ``-0.0`` stays ``-0.0``, ``nan`` stays ``nan``, a
  model keeps its set fields and extras.
* ``NDARRAY``: a numpy array as dtype + shape + raw bytes; decodes with ``np.frombuffer`` in about a
  microsecond (a 768-dim float32 vector as JSON takes ~140 µs). The array comes back read-only, since the
  L1 hands the same object to every caller.
* ``F64LIST``: a list of 8 or more Python floats (an embedding from an HTTP API) packed as float64: exact,
  and far faster to decode than JSON.
* ``PICKLE``: only for namespaces that opt in (``codec: "pickle"``) and only signed; an unsigned pickle
  payload is never loaded, and a bad signature is a ``DecodeError`` (counted as a miss), never a load.

Which stored type names a decode may turn into a class (issue 14, item 3): see ``infra.cache.record_types``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import hashlib
import hmac
import json
import math
import struct
import uuid
import zlib
from collections.abc import Callable
from typing import Any

from infra.cache.codec_errors import DecodeError, EncodeError, UnresolvedTypeError
from infra.cache.keys import type_name
from infra.cache.record_types import (
    TRUSTED_MODULES,
    decoder_for,
    encoder_for,
    register_type,
    resolve_type,
    trusted,
)

__all__ = [
    "BYTES",
    "F64LIST",
    "FLAG_SIGNED",
    "FLAG_ZLIB",
    "JSON",
    "NDARRAY",
    "PICKLE",
    "STR",
    "TAGGED",
    "TRUSTED_MODULES",
    "Codec",
    "DecodeError",
    "EncodeError",
    "Signer",
    "UnresolvedTypeError",
    "register_type",
]

STR, BYTES, JSON, TAGGED, NDARRAY, F64LIST, PICKLE = 1, 2, 3, 4, 5, 6, 7
FLAG_ZLIB = 0x40
FLAG_SIGNED = 0x80
_KIND_MASK = 0x3F
_MIN_F64LIST = 8


class Signer:
    """HMAC-SHA256 signing of payloads. The key comes from the environment; ``repr`` never shows it."""

    __slots__ = ("_key",)
    SIZE = 32

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("signing key must not be empty")
        self._key = bytes(key)

    def __repr__(self) -> str:
        return "Signer(<key hidden>)"

    def sign(self, codec: int, body: bytes) -> bytes:
        return hmac.new(self._key, bytes((codec & 0xFF,)) + body, hashlib.sha256).digest() + body

    def verify(self, codec: int, payload: bytes) -> bytes:
        if len(payload) < self.SIZE:
            raise DecodeError("signed payload is shorter than its signature")
        mac, body = payload[: self.SIZE], payload[self.SIZE :]
        good = hmac.new(self._key, bytes((codec & 0xFF,)) + body, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, good):
            raise DecodeError("bad signature on a cached value (tampered, or written with another key)")
        return body


# ---------------------------------------------------------------------------------- tagged JSON
def _np_to(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.ndarray) and not obj.dtype.hasobject:
        arr = np.ascontiguousarray(obj)
        return {"$nd": [arr.dtype.str, list(arr.shape), base64.b64encode(arr.tobytes()).decode("ascii")]}
    if isinstance(obj, np.generic) and not obj.dtype.hasobject:
        return {"$np": [obj.dtype.str, base64.b64encode(obj.tobytes()).decode("ascii")]}
    return None


def _to(obj: Any, tagged: list[bool], depth: int = 0) -> Any:
    if depth > 200:
        raise EncodeError("value nested too deeply (a cycle?)")
    t = type(obj)
    if t is str or t is int or t is bool or obj is None:
        return obj
    if t is float:
        if math.isfinite(obj):
            return obj
        tagged[0] = True
        return {"$f": "nan" if obj != obj else ("inf" if obj > 0 else "-inf")}
    if t is list:
        return [_to(v, tagged, depth + 1) for v in obj]
    if t is dict:
        if all(type(k) is str and not k.startswith("$") for k in obj):
            return {k: _to(v, tagged, depth + 1) for k, v in obj.items()}
        tagged[0] = True
        return {"$map": [[_to(k, tagged, depth + 1), _to(v, tagged, depth + 1)] for k, v in obj.items()]}
    tagged[0] = True
    if t is tuple:
        return {"$tuple": [_to(v, tagged, depth + 1) for v in obj]}
    if t is bytes or t is bytearray:
        return {"$bytes" if t is bytes else "$bytearray": base64.b64encode(obj).decode("ascii")}
    if t is set or t is frozenset:
        return {"$set" if t is set else "$frozenset": [_to(v, tagged, depth + 1) for v in obj]}
    if t is _dt.datetime:
        return {"$datetime": [obj.isoformat(), obj.fold]}
    if t is _dt.date:
        return {"$date": obj.isoformat()}
    if t is _dt.time:
        return {"$time": [obj.isoformat(), obj.fold]}
    if t is _dt.timedelta:
        return {"$timedelta": [obj.days, obj.seconds, obj.microseconds]}
    if t is decimal.Decimal:
        return {"$decimal": str(obj)}
    if t is uuid.UUID:
        return {"$uuid": str(obj)}
    if t is complex:
        return {"$complex": [_to(obj.real, tagged), _to(obj.imag, tagged)]}
    reg = encoder_for(t)
    if reg is not None:
        tname, enc = reg
        return {"$obj": [tname, _to(enc(obj), tagged, depth + 1)]}
    if (t.__module__ or "").startswith("numpy"):
        r = _np_to(obj)
        if r is not None:
            return r
    raise EncodeError(
        f"the safe codec can't store a {type_name(t)}; register_type() it, or opt the namespace into "
        "the signed pickle codec"
    )


def _f(v: str) -> float:
    return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[v]


def _dt_(v: Any) -> _dt.datetime:
    iso, fold = v
    return _dt.datetime.fromisoformat(iso).replace(fold=fold)


def _time_(v: Any) -> _dt.time:
    iso, fold = v
    return _dt.time.fromisoformat(iso).replace(fold=fold)


def _obj(v: Any) -> Any:
    tname, data = v
    reg = decoder_for(tname)
    if reg is None:
        raise UnresolvedTypeError(tname)  # Codec.decode resolves it under its policy and decodes again
    _cls, _encode, decode = reg
    return decode(data)


def _nd(v: Any) -> Any:
    import numpy as np

    dtype, shape, b64 = v
    return np.frombuffer(base64.b64decode(b64), dtype=np.dtype(dtype)).reshape(shape)


def _np_scalar(v: Any) -> Any:
    import numpy as np

    dtype, b64 = v
    return np.frombuffer(base64.b64decode(b64), dtype=np.dtype(dtype))[0]


_FROM: dict[str, Callable[[Any], Any]] = {
    "$f": _f,
    "$map": lambda v: {k: x for k, x in v},
    "$tuple": tuple,
    "$bytes": base64.b64decode,
    "$bytearray": lambda v: bytearray(base64.b64decode(v)),
    "$set": set,
    "$frozenset": frozenset,
    "$datetime": _dt_,
    "$date": _dt.date.fromisoformat,
    "$time": _time_,
    "$timedelta": lambda v: _dt.timedelta(*v),  # [days, seconds, microseconds]
    "$decimal": decimal.Decimal,
    "$uuid": uuid.UUID,
    "$complex": lambda v: complex(*v),  # [real, imag]
    "$obj": _obj,
    "$nd": _nd,
    "$np": _np_scalar,
}


def _hook(d: dict[str, Any]) -> Any:
    if len(d) == 1:
        ((k, v),) = d.items()
        fn = _FROM.get(k)
        if fn is not None:
            return fn(v)
    return d


# ---------------------------------------------------------------------------------- the codec
def inflate(body: bytes, limit: int | None) -> bytes:
    """zlib-decompress ``body``, refusing (``DecodeError``) output longer than ``limit`` bytes without ever
    holding more than ``limit + 1`` of it: a small row can't make a read allocate gigabytes."""
    if limit is None:
        return zlib.decompress(body)
    d = zlib.decompressobj()
    out = d.decompress(body, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise DecodeError(f"compressed value inflates past the store's limit ({limit} bytes): refused")
    if not d.eof:
        raise DecodeError("compressed value is truncated")
    return out


_HDR = struct.Struct("<B")


class Codec:
    """Encodes values to ``(payload, codec_id)`` and back, for one namespace's policy.

    ``pickle``: the namespace opted into the signed pickle codec (needs ``signer``); ``sign``: sign every
    payload (shared stores); ``compress_threshold``: zlib above this many bytes (0 disables);
    ``trusted_modules``: module prefixes whose record types a decode may import, besides
    ``TRUSTED_MODULES`` (see the module docstring).
    """

    __slots__ = ("_max", "_pickle", "_sign", "_signer", "_threshold", "_trusted")

    def __init__(
        self,
        *,
        signer: Signer | None = None,
        pickle: bool = False,
        sign: bool = False,
        compress_threshold: int = 8192,
        max_decoded: int | None = None,
        trusted_modules: tuple[str, ...] = (),
    ) -> None:
        if sign and signer is None:
            raise ValueError("sign=True needs a signer (set the signing key environment variable)")
        self._signer = signer
        self._pickle = bool(pickle and signer is not None)
        self._sign = sign
        self._threshold = compress_threshold
        # the store's own byte limit (issue 17 item 12): no value larger is ever written, so a compressed
        # payload that inflates past it is a decompression bomb and is refused before it is allocated
        self._max = max_decoded or None
        self._trusted = TRUSTED_MODULES + tuple(trusted_modules)

    @property
    def signs(self) -> bool:
        """Whether every payload is signed (and unsigned ones refused)."""
        return self._sign

    def encode(self, value: Any) -> tuple[bytes, int]:
        t = type(value)
        if t is str:
            kind, body = STR, value.encode("utf-8", "surrogatepass")
        elif t is bytes:
            kind, body = BYTES, value
        elif t is list and len(value) >= _MIN_F64LIST and all(type(v) is float for v in value):
            kind, body = F64LIST, struct.pack(f"<{len(value)}d", *value)
        elif (t.__module__ or "") == "numpy" and t.__name__ == "ndarray" and not value.dtype.hasobject:
            kind, body = NDARRAY, self._nd_body(value)
        else:
            try:
                tagged = [False]
                data = _to(value, tagged)
                body = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
                    "utf-8", "surrogatepass"
                )
                kind = TAGGED if tagged[0] else JSON
            except EncodeError:
                if not self._pickle:
                    raise
                import pickle

                try:
                    kind, body = PICKLE, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as exc:
                    raise EncodeError(f"value can't be pickled either: {exc}") from exc
            except (TypeError, ValueError, RecursionError) as exc:
                raise EncodeError(f"value can't be encoded: {exc}") from exc
        codec = kind
        if self._max is not None and len(body) > self._max:
            raise EncodeError(f"value of {len(body)} bytes is over the store's limit ({self._max} bytes)")
        if self._threshold and len(body) > self._threshold:
            packed = zlib.compress(body, 3)
            if len(packed) < len(body):
                body, codec = packed, codec | FLAG_ZLIB
        if self._sign or kind == PICKLE:
            assert self._signer is not None
            codec |= FLAG_SIGNED
            body = self._signer.sign(codec, body)
        return body, codec

    @staticmethod
    def _nd_body(arr: Any) -> bytes:
        import numpy as np

        a = np.ascontiguousarray(arr)
        dt = a.dtype.str.encode("ascii")
        head = struct.pack(f"<B{len(dt)}sB{a.ndim}q", len(dt), dt, a.ndim, *a.shape)
        return head + a.tobytes()

    def decode(self, payload: bytes, codec: int) -> Any:
        """Decode a stored payload; raises ``DecodeError`` for anything untrusted or unreadable."""
        if codec == STR and not self._sign:  # the common LLM answer: no flags, nothing to check
            try:
                return payload.decode("utf-8", "surrogatepass")
            except (UnicodeDecodeError, AttributeError) as exc:
                raise DecodeError(f"cached text can't be decoded: {exc!r}") from exc
        kind = codec & _KIND_MASK
        body = payload
        if codec & FLAG_SIGNED:
            if self._signer is None:
                raise DecodeError("cached value is signed but no signing key is configured")
            body = self._signer.verify(codec, body)
        elif self._sign or kind == PICKLE:
            raise DecodeError("unsigned value where only signed ones are accepted (never unpickled)")
        try:
            if codec & FLAG_ZLIB:
                body = inflate(body, self._max)
            if kind == STR:
                return body.decode("utf-8", "surrogatepass") if type(body) is bytes else bytes(body).decode()
            if kind == BYTES:
                return bytes(body)
            if kind == JSON:
                return json.loads(body)
            if kind == TAGGED:
                return self._tagged(body, signed=bool(codec & FLAG_SIGNED))
            if kind == F64LIST:
                return list(struct.unpack(f"<{len(body) // 8}d", body))
            if kind == NDARRAY:
                return self._nd_decode(body)
            if kind == PICKLE:
                if not self._pickle:
                    raise DecodeError("pickle payload in a namespace that does not opt into pickle")
                import pickle

                return pickle.loads(body)
        except DecodeError:
            raise
        except Exception as exc:  # corrupt body of any kind: a miss, never a crash
            raise DecodeError(f"cached value of codec {codec} can't be decoded: {exc!r}") from exc
        raise DecodeError(f"unknown codec id {codec}")

    def _tagged(self, body: bytes, *, signed: bool) -> Any:
        """Tagged JSON; a record type not yet known here is resolved under the policy, then decoded again."""
        seen: set[str] = set()
        while True:
            try:
                return json.loads(body, object_hook=_hook)
            except UnresolvedTypeError as exc:
                tname = exc.type_name
                if tname in seen or not resolve_type(
                    tname, may_import=lambda mod: signed or trusted(mod, self._trusted)
                ):
                    raise
                seen.add(tname)

    @staticmethod
    def _nd_decode(body: bytes) -> Any:
        import numpy as np

        n = body[0]
        dt = body[1 : 1 + n].decode("ascii")
        ndim = body[1 + n]
        off = 2 + n
        shape = struct.unpack_from(f"<{ndim}q", body, off)
        off += 8 * ndim
        return np.frombuffer(body, dtype=np.dtype(dt), offset=off).reshape(shape)
