"""cached_class: a thin subclass on @cached that keeps what callers can observe about the original."""

from __future__ import annotations

import asyncio
import copy
import inspect
import pickle
from typing import Any

import pytest

from infra.errors import WrapError
from infra.integrate import cached_class


def test_wrapped_class_keeps_isinstance_name_docstrings_and_signatures(
    sample: Any, private_cache: Any
) -> None:
    """isinstance holds; name, qualname, module, docstrings and inspect.signature are the originals'."""
    S = cached_class(sample.Scorer, ["score", "ascore"], cache=private_cache)
    s = S(2.0)
    assert isinstance(s, sample.Scorer) and issubclass(S, sample.Scorer)
    assert (S.__name__, S.__qualname__, S.__module__, S.__doc__) == (
        "Scorer",
        "Scorer",
        sample.__name__,
        "Scores text.",
    )
    assert inspect.signature(S.score) == inspect.signature(sample.Scorer.score)
    assert inspect.signature(S) == inspect.signature(sample.Scorer)
    assert S.score.__doc__ == "Score one text."
    assert S.__infra_original__ is sample.Scorer


def test_repeated_calls_compute_once_and_return_equal_results(sample: Any, private_cache: Any) -> None:
    """The second call with equal arguments (positional or keyword, defaults applied) is served from cache."""
    S = cached_class(sample.Scorer, ["score"], namespace="scoring", cache=private_cache)
    s = S(2.0)
    first = s.score("hello")
    assert s.score("hello") == first
    assert s.score("hello", scale=1) == first
    assert s.score(text="hello") == first
    assert sample.CALLS == [("score", "hello", 1)]
    assert s.score("hello", scale=2) == {"text": "hello", "value": 20.0}
    assert len(sample.CALLS) == 2
    assert private_cache.namespace_stats("scoring")["hits"] == 3


def test_async_methods_stay_coroutine_functions_and_are_cached(sample: Any, private_cache: Any) -> None:
    S = cached_class(sample.Scorer, ["ascore"], cache=private_cache)
    assert inspect.iscoroutinefunction(S.ascore)

    async def go() -> list[Any]:
        s = S()
        return [await s.ascore("x"), await s.ascore("x")]

    assert asyncio.run(go()) == [["x", 1], ["x", 1]]
    assert sample.CALLS == [("ascore", "x")]


def test_static_and_class_methods_stay_static_and_class_methods(sample: Any, private_cache: Any) -> None:
    S = cached_class(sample.Scorer, ["double", "make"], cache=private_cache)
    assert isinstance(inspect.getattr_static(S, "double"), staticmethod)
    assert isinstance(inspect.getattr_static(S, "make"), classmethod)
    assert S.double(4) == S().double(4) == 8
    assert S.make(3) == S.make(3) == "Scorer:3"
    assert sample.CALLS == [("double", 4), ("make", 3)]


def test_exceptions_are_the_originals_and_never_cached(sample: Any, private_cache: Any) -> None:
    """A raising method raises the same exception type and message on every call (each call runs)."""
    S = cached_class(sample.Scorer, ["score"], cache=private_cache)
    for _ in range(3):
        with pytest.raises(ValueError, match="cannot score 'boom'"):
            S().score("boom")
    assert sample.CALLS.count(("score", "boom", 1)) == 3


def test_instances_pickle_and_copy(sample: Any, private_cache: Any) -> None:
    """Pickle names the original class (importable anywhere); copy and deepcopy keep the cached class."""
    S = cached_class(sample.Scorer, ["score"], cache=private_cache)
    s = S(3.0)
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(s, protocol=proto))
        assert type(back) is sample.Scorer and back.weight == 3.0
    assert type(copy.copy(s)) is S and copy.copy(s).weight == 3.0
    assert type(copy.deepcopy(s)) is S


def test_slotted_and_abstract_base_classes_wrap_without_changing_their_shape(
    sample: Any, private_cache: Any
) -> None:
    """A __slots__ class gains no __dict__; an ABC subclass keeps its metaclass; inherited methods wrap."""
    Sl = cached_class(sample.Slotted, ["get"], cache=private_cache)
    obj = Sl(1)
    assert not hasattr(obj, "__dict__")
    assert obj.get(2) == obj.get(2) == [1, 2]
    Im = cached_class(sample.Impl, ["run", "inherited"], cache=private_cache)
    assert type(Im) is type(sample.Impl)
    assert Im().run(1) == Im().run(1) == 10 and Im().inherited(1) == 2
    assert sample.CALLS == [("slotted", 2), ("run", 1), ("inherited", 1)]


def test_include_self_keys_on_the_instance_state(sample: Any, private_cache: Any) -> None:
    """include_self=True: instances with different attributes get different entries, equal ones share."""
    S = cached_class(sample.Scorer, ["score"], include_self=True, cache=private_cache)
    assert S(1.0).score("ab") == {"text": "ab", "value": 2.0}
    assert S(3.0).score("ab") == {"text": "ab", "value": 6.0}
    assert S(3.0).score("ab") == {"text": "ab", "value": 6.0}
    assert len(sample.CALLS) == 2


def test_version_bump_drops_old_entries(sample: Any, private_cache: Any) -> None:
    S1 = cached_class(sample.Scorer, ["plain"], version="1", cache=private_cache)
    S2 = cached_class(sample.Scorer, ["plain"], version="2", cache=private_cache)
    S1().plain(5)
    S1().plain(5)
    S2().plain(5)
    assert sample.CALLS == [("plain", 5), ("plain", 5)]


def test_layer_off_returns_the_original_class(sample: Any, make_config: Any) -> None:
    """With enabled: false in the process-wide config, cached_class hands back cls itself: zero cost."""
    from infra.config import reset_config, set_config

    set_config(make_config({"enabled": False}))
    try:
        assert cached_class(sample.Scorer, ["score"]) is sample.Scorer
    finally:
        reset_config()


def test_wrapping_twice_starts_from_the_original_function(sample: Any, private_cache: Any) -> None:
    """Wrapping an already wrapped class caches once, not twice (one computation, one entry)."""
    S = cached_class(sample.Scorer, ["plain"], cache=private_cache)
    SS = cached_class(S, ["plain"], cache=private_cache)
    assert SS().plain(1) == SS().plain(1) == 1
    assert sample.CALLS == [("plain", 1)]


@pytest.mark.parametrize(
    ("methods", "message"),
    [
        (["scroe"], r"no method 'scroe' \(did you mean 'score'\?\)"),
        (["label"], r"'label' is a property"),
        (["__init__"], r"'__init__' is a special method"),
        ([], r"methods is empty"),
        (["score", "score"], r"method 'score' is listed twice"),
    ],
)
def test_methods_that_cannot_be_cached_are_clear_errors(
    sample: Any, methods: list[str], message: str
) -> None:
    with pytest.raises(WrapError, match=message):
        cached_class(sample.Scorer, methods)


def test_a_generator_method_is_cached_as_a_recorded_stream(sample: Any, private_cache: Any) -> None:
    """Issue 14, item 4: a streaming method is wrapped (it used to be refused) and replayed on a hit."""
    import inspect

    S = cached_class(sample.Scorer, ["stream"], cache=private_cache)
    assert inspect.isgeneratorfunction(S.stream)
    assert list(S().stream(3)) == [0, 1, 2]
    assert list(S().stream(3)) == [0, 1, 2]
    assert private_cache.namespace_stats("Scorer")["hits"] == 1

    class Streamer:
        async def words(self, text: str) -> Any:
            for w in text.split():
                yield w

    import asyncio

    A = cached_class(Streamer, ["words"], cache=private_cache)
    assert inspect.isasyncgenfunction(A.words)

    async def collect() -> list[str]:
        return [w async for w in A().words("a b")]

    assert asyncio.run(collect()) == asyncio.run(collect()) == ["a", "b"]
    assert private_cache.namespace_stats("Streamer")["hits"] == 1


def test_a_string_instead_of_a_method_list_is_an_error(sample: Any) -> None:
    with pytest.raises(WrapError, match="must be a list of names"):
        cached_class(sample.Scorer, "score")  # type: ignore[arg-type]


def test_a_non_class_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="takes a class"):
        cached_class(len, ["x"])  # type: ignore[arg-type]
