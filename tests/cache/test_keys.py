"""Keys: canonical typed encoding, golden values, and the property that equal ⇔ same key."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import math
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.cache.keys import (
    UncacheableError,
    canonical_bytes,
    explain_key,
    function_key,
    make_key,
)

GOLDEN = {
    "int": (("ns", (1,), {}), "c2c7e51246746d151288d44a8de605b8de335d5b809e2872028bdd0e26607d0e"),
    "float": (("ns", (1.0,), {}), "823162c506262bf50a92b1231b6a9e742e0282b25d3426a7914691dc3c0dffdc"),
    "bool": (("ns", (True,), {}), "57b864b4c59250f6a11feb212cf6c1a13d50389e6d6deea008182b4edbd09f51"),
    "str": (("ns", ("1",), {}), "272133f8bdd258a82fd5f8a999ad5435c5125a955e406fdc07fd616974289b0d"),
    "bytes": (("ns", (b"1",), {}), "3ad03b09245fe99e8e71077da5e14f9016496237913022e146727b65251248ee"),
    "none": (("ns", (None,), {}), "5895d16cba49e8f317723ab80c2deb0d8ac1499ca41a47e174263b3395213201"),
    "tuple": (("ns", ((1, 2),), {}), "0b7da809b0bb7151cbb68e95127e8f21fc0560e65ce28573cde61989a5bcb33a"),
    "list": (("ns", ([1, 2],), {}), "b0b19078ccc646afa967b909db06c63a9b7108c0f04d31fde0dfda4bd706a228"),
    "dict": (
        ("inference", ({"model": "llama3", "options": {"num_ctx": 4096, "temperature": 0.3}},), {}),
        "dee635b5b27539af7a9aca3f3a4761460b4fca779bbefc03648a160ead16c573",
    ),
    "named": (
        ("inference", ("hello",), {"model": "llama3"}),
        "062ca70ba7459d8c09a11a376264154b0fd3fee202a611318b235e1cfe5eb625",
    ),
    "nan": (("ns", (float("nan"),), {}), "5d570944451923a989ee8dd254310fa2d2aea31abdfa43a96a2bf8d9dfc4e5a6"),
    "negzero": (("ns", (-0.0,), {}), "4e9388743cdf2a9f3f4c99584c2ddc60883fda0a74c031d036201ad4e3bdd4f0"),
    "bigint": (("ns", (2**200,), {}), "93c82c2197a7c1a4fff5d8dba5597717fd2c759b721bfde2c3e567ee5003fb58"),
    "set": (("ns", ({3, 1, 2},), {}), "b28b5cc87916234e4feda0c079d549a152b51ec9f2916d18772444aedac3a5ff"),
    "datetime": (
        ("ns", (datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),), {}),
        "93c27a21f2ce1da40bb3986df56cbdd377acd9b70374c7c4813392d1f0bfe18c",
    ),
    "decimal": (
        ("ns", (decimal.Decimal("1.10"),), {}),
        "a7ecb417bb501048ccc43bb6fbd67de5d7f1d25017c1f51a5437e992b1e828c5",
    ),
    "uuid": (
        ("ns", (uuid.UUID(int=1),), {}),
        "3f82aa2c6a01fff6407d074f5ba237a564cae03fcb98ce82739dc92b3dcc5365",
    ),
    "unicode": (("ns", ("héllo ✓",), {}), "40ed0a3ef9bf9c4b11bdead6daafff6c339c9abda750da9acfec14abc4367ff7"),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_keys_never_change(name: str) -> None:
    """Keys are pinned: a change here would orphan every stored entry (bump KEY_SCHEMA instead)."""
    (ns, parts, named), expected = GOLDEN[name]
    assert make_key(ns, *parts, **named) == expected


def test_golden_versioned_function_and_array_keys() -> None:
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    assert make_key("ns", 1, version=2) == "87cbc59455d4e630d022fa79825188d724d7d63afa9a86ef2d4f4aec92cc594c"
    assert (
        function_key("inference", "mod.f", {"prompt": "hi", "model": "m"})
        == "f3f546431dc377d802143784e93a838c7af5480c82532e688b95bab7f6f6bebc"
    )
    arr = np.arange(4, dtype=np.float32).reshape(2, 2)
    assert make_key("ns", arr) == "85b8dd6a61a7cbaeb7ea9d55c11c8c6b611736f0592e1e5d367fd63a7d786acc"
    t = torch.arange(4, dtype=torch.float32).reshape(2, 2)
    assert make_key("ns", t) == "278cd59919cfb87d01b69ed74d453c64426b26dc692d771283f05df3f32bc384"


def test_canonical_encoding_is_the_documented_byte_format() -> None:
    assert canonical_bytes(1) == b"i1;"
    assert canonical_bytes(-255) == b"i-ff;"
    assert canonical_bytes("ab") == b"s2:ab"
    assert canonical_bytes(b"ab") == b"b2:ab"
    assert canonical_bytes(None) == b"N"
    assert canonical_bytes((True, False)) == b"(2:TF"
    assert canonical_bytes({"b": 1, "a": 2}) == b"{2:s1:ai2;s1:bi1;"


def test_types_are_told_apart() -> None:
    values: list[Any] = [
        1,
        1.0,
        True,
        "1",
        b"1",
        bytearray(b"1"),
        (1,),
        [1],
        {1},
        frozenset({1}),
        None,
        0,
        False,
        0.0,
        -0.0,
        "",
    ]
    keys = {make_key("ns", v) for v in values}
    assert len(keys) == len(values)


def test_dict_order_does_not_matter_but_values_do() -> None:
    assert make_key("ns", {"a": 1, "b": 2}) == make_key("ns", {"b": 2, "a": 1})
    assert make_key("ns", x=1, y=2) == make_key("ns", y=2, x=1)
    assert make_key("ns", {"a": 1}) != make_key("ns", {"a": 2})


def test_floats_are_exact_and_every_nan_is_one_key() -> None:
    assert make_key("ns", 0.1) != make_key("ns", 0.1 + 1e-17 * 10)
    assert make_key("ns", math.nan) == make_key("ns", float("nan")) == make_key("ns", -math.nan)
    assert make_key("ns", math.inf) != make_key("ns", -math.inf)


def test_namespace_and_version_scope_keys() -> None:
    assert make_key("a", 1) != make_key("b", 1)
    assert make_key("a", 1, version=1) != make_key("a", 1, version=2)
    assert make_key("a", 1) != make_key("a", 1, version=0)


def test_options_such_as_num_ctx_change_the_key() -> None:
    """The LiteLLM bug: provider options left out of the key serve wrong answers."""
    base = {"model": "llama3", "prompt": "hi"}
    assert make_key("inference", base, options={"num_ctx": 4096}) != make_key(
        "inference", base, options={"num_ctx": 8192}
    )


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Color(enum.Enum):
    RED = 1
    BLUE = 2


def test_dataclass_enum_pydantic_numpy_torch_keys() -> None:
    assert make_key("ns", Point(1, 2.0)) == make_key("ns", Point(1, 2.0))
    assert make_key("ns", Point(1, 2.0)) != make_key("ns", Point(1, 2.5))
    assert make_key("ns", Point(1, 2.0)) != make_key("ns", (1, 2.0))
    assert make_key("ns", Color.RED) != make_key("ns", 1)
    pydantic = pytest.importorskip("pydantic")

    class M(pydantic.BaseModel):
        a: int
        b: str = "x"

    assert make_key("ns", M(a=1)) == make_key("ns", M(a=1, b="x"))
    assert make_key("ns", M(a=1)) != make_key("ns", M(a=2))
    np = pytest.importorskip("numpy")
    a = np.zeros(3, dtype=np.float32)
    assert make_key("ns", a) != make_key("ns", a.astype(np.float64))  # dtype matters
    assert make_key("ns", a) != make_key("ns", a.reshape(1, 3))  # shape matters
    assert make_key("ns", np.float32(1.5)) != make_key("ns", 1.5)
    torch = pytest.importorskip("torch")
    t = torch.ones(2, dtype=torch.bfloat16)
    assert make_key("ns", t) == make_key("ns", torch.ones(2, dtype=torch.bfloat16))
    assert make_key("ns", t) != make_key("ns", torch.ones(2, dtype=torch.float16))


def test_objects_with_cache_key_hook() -> None:
    class Model:
        def __init__(self, name: str) -> None:
            self.name = name

        def __cache_key__(self) -> str:
            return self.name

    assert make_key("ns", Model("a")) == make_key("ns", Model("a"))
    assert make_key("ns", Model("a")) != make_key("ns", Model("b"))


def test_unencodable_arguments_raise_uncacheable() -> None:
    with pytest.raises(UncacheableError, match="cannot build a cache key"):
        make_key("ns", object())
    with pytest.raises(UncacheableError):
        make_key("ns", lambda: 1)
    cyc: list[Any] = []
    cyc.append(cyc)
    with pytest.raises(UncacheableError, match="nested deeper"):
        make_key("ns", cyc)


def test_explain_key_shows_what_went_in() -> None:
    e = explain_key("inference", "x" * 200, 0.1, version=3, options={"num_ctx": 4096})
    assert e["key"] == make_key("inference", "x" * 200, 0.1, version=3, options={"num_ctx": 4096})
    assert e["namespace"] == "inference" and e["version"] == {"int": 3}
    assert e["parts"][0]["len"] == 200
    assert e["parts"][1] == {"float": "0.1", "hex": (0.1).hex()}
    assert e["named"]["options"] == {"dict": {"'num_ctx'": {"int": 4096}}}


# ---------------------------------------------------------------------------------- properties
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=4), inner, max_size=4),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=4)), max_size=4),
    ),
    max_leaves=12,
)


def _same(a: Any, b: Any) -> bool:
    """Strict equality: same types all the way down (1 and True and 1.0 differ; 0.0 and -0.0 differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a.hex() == b.hex()
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, frozenset):
        return {canonical_bytes(x) for x in a} == {canonical_bytes(x) for x in b}
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(_values, _values)
def test_property_distinct_values_never_share_a_key(a: Any, b: Any) -> None:
    assert (make_key("ns", a) == make_key("ns", b)) == _same(a, b)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=5), _scalars, max_size=6))
def test_property_equal_values_always_share_a_key(d: dict[str, Any]) -> None:
    shuffled = dict(reversed(list(d.items())))
    assert make_key("ns", d) == make_key("ns", shuffled)
    assert make_key("ns", **d) == make_key("ns", **shuffled) if all(k.isidentifier() for k in d) else True
