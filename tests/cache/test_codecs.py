"""Value codecs: exact round trips of every supported type; pickle only signed; tampering never runs code."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import math
import os
import pickle
import uuid
from pathlib import Path
from typing import Any

import pytest

from infra.cache import codecs
from infra.cache.codecs import Codec, DecodeError, EncodeError, Signer, register_type


@dataclasses.dataclass(frozen=True)
class Reply:
    text: str
    tokens: tuple[int, ...]
    score: float = 0.0


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a.hex() == b.hex() or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


ROUND_TRIP = [
    "plain text",
    "ünïcödé ✓ \ud800",  # a lone surrogate survives
    b"\x00\xffbytes",
    bytearray(b"ba"),
    0,
    -(2**100),
    1.5,
    -0.0,
    math.inf,
    -math.inf,
    math.nan,
    True,
    None,
    [1, "a", None],
    (1, (2, 3), [4]),
    {"a": {"b": [1, 2.5]}},
    {1: "int key", (1, 2): "tuple key", "$x": "dollar key"},
    {"$tuple": [1]},  # a dict that looks like a tag stays a dict
    {1, 2, 3},
    frozenset({"a", b"b"}),
    datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
    datetime.datetime(2024, 5, 6, 7, 8, 9),
    datetime.date(2024, 5, 6),
    datetime.time(7, 8, 9, 10),
    datetime.timedelta(days=-1, seconds=5, microseconds=7),
    decimal.Decimal("1.100"),
    uuid.UUID(int=12345),
    complex(1.5, -2),
    [0.1 * i for i in range(16)],  # float list: packed float64, exact
    Reply("hi", (1, 2), 0.5),
    {"reply": Reply("nested", (3,))},
]


@pytest.mark.parametrize(
    "value", ROUND_TRIP, ids=[f"{type(v).__name__}-{i}" for i, v in enumerate(ROUND_TRIP)]
)
def test_safe_codec_round_trips_exactly(value: Any) -> None:
    c = Codec()
    payload, codec = c.encode(value)
    assert _same(c.decode(payload, codec), value)


def test_plain_json_values_use_the_json_codec_and_strings_are_stored_raw() -> None:
    c = Codec()
    assert c.encode({"a": [1, 2.5, None]})[1] == codecs.JSON
    assert c.encode("hello") == (b"hello", codecs.STR)
    assert c.encode((1,))[1] == codecs.TAGGED


def test_numpy_vectors_are_packed_and_come_back_read_only() -> None:
    np = pytest.importorskip("numpy")
    c = Codec()
    v = np.random.default_rng(0).random(768).astype(np.float32)
    payload, codec = c.encode(v)
    assert codec == codecs.NDARRAY
    assert len(payload) < 768 * 4 + 32
    out = c.decode(payload, codec)
    assert out.dtype == np.float32 and out.shape == (768,) and np.array_equal(out, v)
    assert not out.flags.writeable
    m = np.arange(6, dtype=np.int16).reshape(2, 3)
    assert np.array_equal(c.decode(*c.encode(m)), m)
    nested = {"emb": np.ones(2, dtype=np.float64), "s": np.float32(2.5)}
    back = c.decode(*c.encode(nested))
    assert np.array_equal(back["emb"], nested["emb"]) and back["s"] == np.float32(2.5)


def test_pydantic_models_round_trip() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Answer(pydantic.BaseModel):
        text: str
        logprobs: list[float] = []

    c = Codec()
    a = Answer(text="x", logprobs=[0.5])
    out = c.decode(*c.encode(a))
    assert type(out) is Answer and out == a


def test_large_values_are_compressed_and_round_trip() -> None:
    c = Codec(compress_threshold=100)
    value = "abc" * 1000
    payload, codec = c.encode(value)
    assert codec & codecs.FLAG_ZLIB and len(payload) < 200
    assert c.decode(payload, codec) == value


def test_unregistered_object_cannot_be_stored_by_the_safe_codec() -> None:
    with pytest.raises(EncodeError, match="register_type"):
        Codec().encode(Opaque())


def test_unknown_registered_name_is_a_decode_error_not_an_import() -> None:
    payload = b'{"$obj":["os.system",{"cmd":"true"}]}'
    with pytest.raises(DecodeError, match="not registered"):
        Codec().decode(payload, codecs.TAGGED)


def test_register_type_with_custom_functions() -> None:
    class Money:
        def __init__(self, cents: int) -> None:
            self.cents = cents

    register_type(Money, encode=lambda m: m.cents, decode=Money)
    out = Codec().decode(*Codec().encode(Money(250)))
    assert isinstance(out, Money) and out.cents == 250


class _Boom:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (Path(self.marker),))


class Opaque:
    """Not a dataclass, not registered: only pickle can store it."""


def test_pickle_needs_opt_in_and_a_signing_key(tmp_path: Path) -> None:
    with pytest.raises(EncodeError):
        Codec(pickle=True).encode(Opaque())  # no signer: no pickle
    c = Codec(signer=Signer(b"k" * 32), pickle=True)
    payload, codec = c.encode(Opaque())
    assert codec & codecs.FLAG_SIGNED and codec & 0x3F == codecs.PICKLE
    assert isinstance(c.decode(payload, codec), Opaque)

    def local() -> None:
        pass

    with pytest.raises(EncodeError, match="pickled"):
        c.encode(local)


def test_tampered_signed_pickle_is_a_miss_and_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    signer = Signer(b"secret-key")
    c = Codec(signer=signer, pickle=True)
    good, codec = c.encode(Reply("ok", ()))  # any signed value
    evil = pickle.dumps(_Boom(str(marker)))
    # 1) the attacker swaps the body but cannot fix the MAC
    with pytest.raises(DecodeError, match="bad signature"):
        c.decode(good[:32] + evil, codecs.PICKLE | codecs.FLAG_SIGNED)
    # 2) signed with another key
    other = Signer(b"attacker-key").sign(codecs.PICKLE | codecs.FLAG_SIGNED, evil)
    with pytest.raises(DecodeError, match="bad signature"):
        c.decode(other, codecs.PICKLE | codecs.FLAG_SIGNED)
    # 3) claims to be unsigned pickle
    with pytest.raises(DecodeError, match="never unpickled"):
        c.decode(evil, codecs.PICKLE)
    # 4) a flipped bit in a genuine signed payload
    flipped = bytearray(good)
    flipped[-1] ^= 1
    with pytest.raises(DecodeError):
        c.decode(bytes(flipped), codec)
    assert not marker.exists()
    # sanity: the payload really is dangerous when loaded without checks
    pickle.loads(evil)
    assert marker.exists()
    os.unlink(marker)


def test_signed_codec_refuses_unsigned_payloads() -> None:
    c = Codec(signer=Signer(b"k"), sign=True)
    payload, codec = c.encode({"a": 1})
    assert codec & codecs.FLAG_SIGNED
    assert c.decode(payload, codec) == {"a": 1}
    with pytest.raises(DecodeError, match="unsigned"):
        c.decode(b'{"a":1}', codecs.JSON)


def test_signer_repr_hides_the_key() -> None:
    assert "secret" not in repr(Signer(b"secret"))


def test_corrupt_payloads_are_decode_errors() -> None:
    c = Codec()
    for payload, codec in [
        (b"\xff\xfe", codecs.STR),
        (b"{", codecs.JSON),
        (b"abc", codecs.F64LIST | codecs.FLAG_ZLIB),
        (b"", 63),
    ]:
        with pytest.raises(DecodeError):
            c.decode(payload, codec)
