"""@cached on functions, coroutines and methods: keys from bound arguments, fail-open, off means off."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.cache import Cache, cached

MakeCache = Callable[..., Cache]


def test_defaults_and_keywords_share_an_entry(cache: Cache) -> None:
    calls: list[tuple[Any, ...]] = []

    @cached(namespace="inference", cache=cache)
    def generate(prompt: str, model: str = "llama3", *, temperature: float = 0.0) -> str:
        calls.append((prompt, model, temperature))
        return f"{model}:{prompt}:{temperature}"

    assert generate("hi") == "llama3:hi:0.0"
    assert generate(prompt="hi") == "llama3:hi:0.0"
    assert generate("hi", "llama3") == "llama3:hi:0.0"
    assert generate("hi", model="llama3", temperature=0.0) == "llama3:hi:0.0"
    assert len(calls) == 1
    assert generate("hi", temperature=0.5) == "llama3:hi:0.5"
    assert generate("hi", "mistral") == "mistral:hi:0.0"
    assert generate(" hi") == "llama3: hi:0.0"
    assert len(calls) == 4


def test_argument_types_are_told_apart(cache: Cache) -> None:
    calls: list[Any] = []

    @cached(cache=cache)
    def f(x: Any) -> str:
        calls.append(x)
        return repr(x)

    for v in (1, True, 1.0, "1", b"1", None, (1,), [1]):
        assert f(v) == repr(v)
        assert f(v) == repr(v)
    assert len(calls) == 8


def test_var_args_and_options_dicts(cache: Cache) -> None:
    calls: list[int] = []

    @cached(cache=cache)
    def f(*parts: str, **options: Any) -> int:
        calls.append(1)
        return len(parts) + len(options)

    assert f("a", "b", num_ctx=4096) == 3
    assert f("a", "b", num_ctx=4096) == 3
    assert f("a", "b", num_ctx=8192) == 3
    assert len(calls) == 2


async def test_async_functions(cache: Cache) -> None:
    calls: list[str] = []

    @cached(cache=cache)
    async def embed(text: str) -> list[float]:
        calls.append(text)
        await asyncio.sleep(0)
        return [0.25] * 8

    assert await embed("a") == [0.25] * 8
    assert await embed("a") == [0.25] * 8
    assert await asyncio.gather(embed("b"), embed("b"), embed("b")) == [[0.25] * 8] * 3
    assert calls == ["a", "b"]


def test_methods_key_on_the_instance_configuration_unless_key_attrs_is_empty(cache: Cache) -> None:
    calls: list[str] = []

    class Scorer:
        def __init__(self, name: str) -> None:
            self.name = name

        @cached(namespace="scores", cache=cache)
        def score(self, text: str) -> int:
            calls.append(self.name)
            return len(text)

        @cached(namespace="scores", cache=cache, key_attrs=[])
        def shared(self, text: str) -> int:
            calls.append(f"shared-{self.name}")
            return len(text)

    assert Scorer("a").score("hello") == 5
    assert Scorer("b").score("hello") == 5  # configured differently: its own entry
    assert Scorer("a").score("hello") == 5  # configured the same: shares
    assert calls == ["a", "b"]
    assert Scorer("a").shared("hello") == Scorer("b").shared("hello") == 5  # key_attrs=[]: one entry
    assert calls == ["a", "b", "shared-a"]
    del calls[:]

    @dataclasses.dataclass
    class Model:
        temperature: float

        @cached(namespace="scores", cache=cache, include_self=True)
        def run(self, text: str) -> str:
            calls.append(f"run{self.temperature}")
            return f"{text}@{self.temperature}"

    assert Model(0.1).run("x") == "x@0.1"
    assert Model(0.1).run("x") == "x@0.1"
    assert Model(0.9).run("x") == "x@0.9"
    assert calls == ["run0.1", "run0.9"]


def test_version_and_namespace_separate_entries(cache: Cache) -> None:
    calls: list[int] = []

    def make(version: Any) -> Callable[[int], int]:
        @cached(cache=cache, version=version)
        def f(x: int) -> int:
            calls.append(x)
            return x * 10

        return f

    assert make(1)(2) == 20 and make(1)(2) == 20 and make(2)(2) == 20
    assert len(calls) == 2


def test_uncacheable_argument_runs_uncached_and_warns_once(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    @cached(namespace="ns", cache=cache)
    def f(x: Any) -> str:
        calls.append(1)
        return "ok"

    with caplog.at_level(logging.WARNING, logger="infra.cache"):
        for _ in range(3):
            assert f(object()) == "ok"
    assert len(calls) == 3
    assert cache.namespace_stats("ns")["uncacheable"] == 3
    assert sum("not cacheable" in r.getMessage() for r in caplog.records) == 1


def test_bad_call_raises_the_functions_own_type_error(cache: Cache) -> None:
    @cached(cache=cache)
    def f(x: int) -> int:
        return x

    with pytest.raises(TypeError):
        f(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        f(y=1)  # type: ignore[call-arg]


def test_exceptions_propagate_and_are_not_cached(cache: Cache) -> None:
    calls: list[int] = []

    @cached(cache=cache)
    def f(x: int) -> int:
        calls.append(x)
        raise ValueError(x)

    for _ in range(2):
        with pytest.raises(ValueError):
            f(1)
    assert len(calls) == 2


def test_disabled_cache_just_calls(make_cache: MakeCache) -> None:
    c = make_cache(enabled=False)
    calls: list[int] = []

    @cached(cache=c)
    def f(x: int) -> int:
        calls.append(x)
        return x

    assert [f(1), f(1)] == [1, 1] and len(calls) == 2


def test_cache_key_and_explain_key(cache: Cache) -> None:
    @cached(namespace="inference", cache=cache, version=3)
    def f(prompt: str, options: dict[str, Any] | None = None) -> str:
        return prompt

    assert f.cache_key("a") == f.cache_key(prompt="a", options=None)  # type: ignore[attr-defined]
    assert f.cache_key("a", {"num_ctx": 1}) != f.cache_key("a", {"num_ctx": 2})  # type: ignore[attr-defined]
    e = f.explain_key("a")  # type: ignore[attr-defined]
    assert e["function"].endswith("test_cache_key_and_explain_key.<locals>.f")
    assert e["arguments"] == {"prompt": {"str": "a"}, "options": {"NoneType": None}}
    assert e["key"] == f.cache_key("a")  # type: ignore[attr-defined]


def test_fast_path_key_equals_full_encoding_key(cache: Cache) -> None:
    """The per-function memo is only a shortcut: it must produce the same key as the full encoding."""

    @cached(cache=cache)
    def f(a: Any, b: Any = 2) -> Any:
        return a

    km = f.key_maker  # type: ignore[attr-defined]
    for args, kw in [(("x",), {}), ((1, True), {}), ((b"x",), {"b": None}), ((None,), {})]:
        fast = km.key(args, kw)  # fills the memo
        assert km.key(args, kw) == fast
        km.clear_memo()
        assert fast == km.full_key(args, kw)
    assert f(1) == 1 and f(True) is True  # 1 and True must not share the memo entry


def test_key_memo_never_merges_values_that_key_differently(cache: Cache) -> None:
    """1 / True / 1.0, 0.0 / -0.0, tuple / list, dict value types: each its own entry even via the memo."""
    calls: list[Any] = []

    @cached(cache=cache)
    def f(x: Any, opts: dict[str, Any] | None = None) -> str:
        calls.append((x, opts))
        return repr((x, opts))

    cases = [
        (1, None),
        (True, None),
        (1.0, None),
        (0.0, None),
        (-0.0, None),
        ((1,), None),
        ([1], None),
        ("a", {"n": 1}),
        ("a", {"n": True}),
        ("a", {"n": 1.0}),
        ("a", {"n": [1]}),
        ("a", {"n": (1,)}),
    ]
    for _ in range(2):
        for x, o in cases:
            assert f(x, opts=o) == repr((x, o))
    assert len(calls) == len(cases)
    km = f.key_maker  # type: ignore[attr-defined]
    for x, o in cases:
        memo_key = km.key((x,), {"opts": o})
        km.clear_memo()
        assert memo_key == km.key((x,), {"opts": o})


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
_plain = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=4) | st.integers(-3, 3), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_plain, _plain)
def test_key_memo_identity_implies_equal_keys(a: Any, b: Any) -> None:
    """Whatever plain values two calls carry (nested, mixed types, big ints, NaN, -0.0), one memo identity
    means one key; and each call's memoised key is the key the full encoding gives."""
    from infra.cache.decorator import KeyMaker
    from infra.cache.keys import function_key

    def f(x: Any) -> None: ...

    km = KeyMaker(f, "inference", None)

    def full(x: Any) -> str:
        return function_key("inference", km.qualname, {"x": x}, None)

    ia, ib = km.fast_id((a,), {}), km.fast_id((b,), {})
    if ia is not None and ia == ib:
        assert full(a) == full(b)
    for x in (a, b):
        assert km.key((x,), {}) == full(x)  # through the memo when it applies
        assert km.key((x,), {}) == full(x)  # and again, now from the memo


def test_key_memo_refuses_subclasses_and_walks_large_containers() -> None:
    import enum

    from infra.cache.decorator import _MARSHAL_MAX, KeyMaker

    class Level(enum.IntEnum):
        LOW = 1

    def f(x: Any) -> None: ...

    km = KeyMaker(f, "inference", None)
    assert km.fast_id(({"level": Level.LOW},), {}) is None  # an IntEnum is not the int 1: full path
    assert km.fast_id(({"level": 1},), {}) != km.fast_id(({"level": True},), {})
    big = [{"role": "user", "content": "x" * _MARSHAL_MAX}]
    fid = km.fast_id((big,), {})
    assert isinstance(fid[0], tuple)  # walked: no copy of the document in the memo
    assert fid == km.fast_id(([{"role": "user", "content": "x" * _MARSHAL_MAX}],), {})


def test_ttl_takes_duration_strings_as_config_does(cache: Cache) -> None:
    """Issue 14, item 9: ``@cached(ttl="1h")`` stores with a one-hour expiry (it used to run the function,
    then raise TypeError)."""
    import time

    calls: list[int] = []

    @cached(namespace="ttl_str", ttl="1h", cache=cache)
    def f(x: int) -> int:
        calls.append(x)
        return x * 2

    t0 = time.time()
    assert f(3) == 6 and f(3) == 6 and calls == [3]
    (info,) = cache.backend.inspect("ttl_str")  # type: ignore[union-attr]
    assert info.expires_at is not None and 3600 <= info.expires_at - t0 <= 3600 * 1.06 + 5  # (jitter 5%)


# ("1 hour" was here: it is a duration since session 14, one parser for every ttl; "1h30" is not)
@pytest.mark.parametrize("bad", ["1h30", "-5s", "soon", -1, float("nan"), True, [1]])
def test_a_bad_ttl_fails_at_decoration_before_any_work(cache: Cache, bad: Any) -> None:
    calls: list[int] = []
    with pytest.raises(ValueError, match=r"@cached\(ttl=...\)"):

        @cached(namespace="ttl_bad", ttl=bad, cache=cache)
        def f(x: int) -> int:
            calls.append(x)
            return x

    assert calls == []
    with pytest.raises(ValueError):
        cache.get_or_compute("ttl_bad", "k", lambda: calls.append(1), ttl=bad)
    assert calls == []


def test_explain_key_on_a_method(cache: Cache) -> None:
    """Through the class with the instance first it works; through a bound method (``a.run.explain_key``)
    the instance is out of reach (a function's attributes aren't bound, and binding them would cost every
    cached method call a descriptor call), so the TypeError says how to write it."""

    class A:
        def __init__(self, k: int) -> None:
            self.k = k

        @cached(namespace="inference", cache=cache)
        def run(self, x: str) -> str:
            return x

    a = A(1)
    e = A.run.explain_key(a, "x")  # type: ignore[attr-defined]
    assert e["key"] == A.run.cache_key(a, "x") != A.run.cache_key(A(2), "x")  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=r"A\.run\.explain_key\(obj, \.\.\.\), not obj\.run\.explain_key"):
        a.run.explain_key("x")  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=r"A\.run\.cache_key\(obj, \.\.\.\)"):
        a.run.cache_key("x")  # type: ignore[attr-defined]
