"""Hits are independent values (issue 14, item 2): what a hit hands back equals, and is independent of,
what any other call got, on every tier and entry point; immutable values may be shared."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.cache import Cache, cached
from infra.cache.codecs import Codec
from infra.hotpath.memo import TimedMemo, timed_memo

MakeCache = Callable[..., Cache]


def _result(x: int) -> dict[str, Any]:
    return {"x": x, "items": [1], "nested": {"tags": ["a"]}, "pair": (1, [2])}


def test_a_caller_editing_a_hit_changes_nothing_for_the_next_caller(cache: Cache) -> None:
    calls: list[int] = []

    @cached(namespace="hits", cache=cache)
    def f(x: int) -> dict[str, Any]:
        calls.append(x)
        return _result(x)

    a = f(1)  # the computing call
    a["items"].append(9)
    a["nested"]["tags"].append("zz")
    b = f(1)  # an L1 hit
    assert b == _result(1) and b is not a
    b["items"].append(10)
    b["pair"][1].append(3)
    c = f(1)
    assert c == _result(1) and c is not b
    assert calls == [1]


def test_async_hits_are_independent_too(cache: Cache) -> None:
    @cached(namespace="hits", cache=cache)
    async def f(x: int) -> dict[str, Any]:
        return _result(x)

    async def main() -> None:
        a = await f(2)
        a["items"].append(9)
        b = await f(2)
        assert b == _result(2)
        b["items"].append(9)
        assert await f(2) == _result(2)

    asyncio.run(main())


def test_l2_hits_and_the_l1_they_fill_are_independent(make_cache: MakeCache) -> None:
    writer = make_cache()
    writer.set("hits", "k", _result(3))
    reader = make_cache()  # same file, cold L1: the first get reads L2
    a = reader.get("hits", "k")
    a["items"].append(9)
    b = reader.get("hits", "k")  # now from the L1 that the first get filled
    assert a is not b and b == _result(3)


def test_set_keeps_a_copy_of_what_it_was_given(cache: Cache) -> None:
    v = _result(4)
    cache.set("hits", "k", v)
    v["items"].append(9)
    assert cache.get("hits", "k") == _result(4)
    got = cache.get_many("hits", ["k"])["k"]
    got["items"].append(9)
    assert cache.get_or_compute("hits", "k", lambda: {"never": True}) == _result(4)


def test_single_flight_followers_each_get_their_own_copy(cache: Cache) -> None:
    async def main() -> list[Any]:
        gate = asyncio.Event()

        async def compute() -> dict[str, Any]:
            await gate.wait()
            return _result(5)

        async def opener() -> None:
            for _ in range(20):  # after the leader and both followers have joined the flight
                await asyncio.sleep(0)
            gate.set()

        results = await asyncio.gather(
            *(cache.aget_or_compute("hits", "sf", compute) for _ in range(3)), opener()
        )
        return list(results[:3])

    out = asyncio.run(main())
    assert all(v == _result(5) for v in out) and len({id(v) for v in out}) == 3
    out[0]["items"].append(9)
    out[1]["nested"]["tags"].clear()
    assert out[2] == _result(5)
    assert cache.namespace_stats("hits")["misses"] == 1


@dataclasses.dataclass
class Report:
    title: str
    scores: list[float]


def test_registered_types_come_back_as_new_objects(cache: Cache) -> None:
    @cached(namespace="hits", cache=cache)
    def report(n: int) -> Report:
        return Report("r", [float(n)])

    a = report(1)
    a.scores.append(2.0)
    b = report(1)
    assert b == Report("r", [1.0]) and b is not a
    b.title = "changed"
    assert report(1) == Report("r", [1.0])


def test_immutable_results_may_be_shared(cache: Cache) -> None:
    @cached(namespace="hits", cache=cache)
    def f(x: int) -> tuple[str, int, frozenset[str]]:
        return ("a", x, frozenset({"b"}))

    assert f(1) == f(1) == ("a", 1, frozenset({"b"}))


def test_numpy_hits_are_read_only(cache: Cache) -> None:
    np = pytest.importorskip("numpy")

    @cached(namespace="hits", cache=cache)
    def vec(n: int) -> Any:
        return np.arange(n, dtype="float32")

    first = vec(4)
    first[0] = 99.0  # the computing caller owns its own array
    hit = vec(4)
    assert hit.tolist() == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(ValueError):
        hit[0] = 5.0
    with pytest.raises(ValueError):
        hit.flags.writeable = True


def test_timed_memo_hits_are_independent() -> None:
    @timed_memo(ttl=60)
    def search(q: str) -> list[dict[str, Any]]:
        return [{"doc": q, "tags": []}]

    a = search("x")
    a[0]["tags"].append("edited")
    b = search("x")
    assert b == [{"doc": "x", "tags": []}] and b is not a

    @timed_memo(ttl=60)
    async def asearch(q: str) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        return [{"doc": q}]

    async def main() -> None:
        r = await asyncio.gather(*(asearch("y") for _ in range(3)))  # one computes, two wait on it
        r[0][0]["doc"] = "edited"
        assert r[1] == r[2] == [{"doc": "y"}] == await asearch("y")
        assert len({id(x) for x in r}) == 3

    asyncio.run(main())

    memo: TimedMemo[str, Any] = TimedMemo(ttl=60)
    v = {"k": [1]}
    memo.set("k", v)
    v["k"].append(2)
    assert memo.get("k") == {"k": [1]}


# ------------------------------------------------------------------ the fast forms agree with the plain twin
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
        st.frozensets(st.integers(), max_size=3),
        st.builds(bytearray, st.binary(max_size=4)),
    ),
    max_leaves=12,
)


def _same(a: Any, b: Any) -> bool:
    """Equal, with identical types all the way down (``1 == 1.0 == True`` would hide a type change)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@settings(max_examples=200, deadline=None)
@given(_values)
def test_freeze_plain_agrees_with_a_deep_copy(value: Any) -> None:
    from infra.cache.values import freeze_plain, is_immutable, thaw, thaw_reference

    stored, how = freeze_plain(value)
    got = thaw(stored, how)
    assert _same(got, thaw_reference(value))
    if not is_immutable(value):
        assert got is not value and thaw(stored, how) is not got


@settings(max_examples=200, deadline=None)
@given(_values)
def test_freeze_encoded_agrees_with_a_deep_copy(value: Any) -> None:
    from infra.cache.values import freeze_encoded, is_immutable, thaw, thaw_reference

    codec = Codec()
    payload, cid = codec.encode(value)
    stored, how = freeze_encoded(value, cid & 0x3F, payload, lambda p: codec.decode(p, cid))
    got = thaw(stored, how)
    assert _same(got, thaw_reference(value))
    if not is_immutable(value):
        assert got is not value and thaw(stored, how) is not got
