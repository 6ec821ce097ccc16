"""Issue 14 item 1: a cached method's key covers the instance's configuration (not its clients, locks or
loggers), a later change of a keyed attribute is honoured, and ``key_attrs`` overrides the rule per
decorator and per ``wrap`` entry."""

from __future__ import annotations

import logging
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from infra.cache import Cache, CacheConfig, cached

_NO_CACHE = Cache(CacheConfig(enabled=False))  # keys only: the property test never stores anything

WORKER = textwrap.dedent("""
    import logging
    import threading

    import ollama

    CALLS = []


    class HybridScorer:
        def __init__(self, weight=1.0, model="llama3.2:3b", host="http://127.0.0.1:9"):
            self.weight = weight
            self._model = model                      # a constructor setting kept privately: keyed
            self._client = ollama.Client(host=host)  # a client: skipped
            self._lock = threading.Lock()            # a lock: skipped
            self.log = logging.getLogger("worker")   # a logger: skipped
            self._calls = 0                          # internal state: skipped

        def score(self, text):
            self._calls += 1
            CALLS.append((self.weight, self._model, text))
            return len(text) * self.weight

        def label(self, text):
            CALLS.append(("label", self._model, text))
            return f"{self._model}:{text}"
""")


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    import importlib

    name = f"identity_worker_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(WORKER)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    yield module
    sys.modules.pop(name, None)


@pytest.fixture
def cache(tmp_path: Path) -> Any:
    c = Cache(CacheConfig(path=str(tmp_path / "c.db")))
    yield c
    c.close()


def test_option1_differently_configured_instances_never_share(worker: Any, make_config: Any) -> None:
    """Seed 004's Option 1: weight=1 and weight=10 give 4.0 and 40.0, as the originals do (main: 4.0 twice);
    an instance holding an ollama.Client, a lock and a logger is still cached."""
    from infra.integrate import enable_caching_for_worker

    classes = enable_caching_for_worker(
        make_config({"wrap": [{"target": f"{worker.__name__}:HybridScorer", "methods": ["score"]}]})
    )
    HybridScorer = classes["HybridScorer"]
    assert HybridScorer(weight=1.0).score("abcd") == 4.0
    assert HybridScorer(weight=10.0).score("abcd") == 40.0
    assert HybridScorer(weight=1.0).score("abcd") == 4.0  # a hit: same configuration, another instance
    assert len(worker.CALLS) == 2
    qwen = HybridScorer(model="qwen2.5:7b")
    assert qwen.score("abcd") == 4.0 and len(worker.CALLS) == 3  # the model setting is keyed too
    # named seam: the worker's own private counter, read to show it changed and is still not keyed
    assert qwen._calls == 1  # internal counters are not part of the key: the next call is a hit
    assert qwen.score("abcd") == 4.0 and len(worker.CALLS) == 3


def test_a_keyed_attribute_changed_after_construction_is_honoured(worker: Any, cache: Any) -> None:
    calls: list[float] = []

    class Scorer:
        def __init__(self, weight: float) -> None:
            self.weight = weight

        @cached(namespace="s", cache=cache)
        def score(self, text: str) -> float:
            calls.append(self.weight)
            return len(text) * self.weight

    s = Scorer(1.0)
    assert s.score("ab") == 2.0
    s.weight = 3.0
    assert s.score("ab") == 6.0
    s.weight = 1.0
    assert s.score("ab") == 2.0
    assert calls == [1.0, 3.0]


def test_key_attrs_per_wrap_entry(worker: Any, make_config: Any) -> None:
    """``key_attrs: ["_model"]``: weight is declared irrelevant for ``label``; ``[]`` shares across all."""
    from infra.integrate import enable_caching_for_worker

    target = f"{worker.__name__}:HybridScorer"
    classes = enable_caching_for_worker(
        make_config({"wrap": [{"target": target, "methods": ["label"], "key_attrs": ["_model"]}]})
    )
    H = classes["HybridScorer"]
    assert H(weight=1.0).label("x") == H(weight=9.0).label("x") == "llama3.2:3b:x"
    assert H(model="other").label("x") == "other:x"
    assert len(worker.CALLS) == 2


def test_key_attrs_per_decorator_with_a_dotted_path(cache: Any) -> None:
    class Llm:
        def __init__(self, model: str) -> None:
            self.model = model
            self.session = object()  # not a setting, and unencodable: the dotted path avoids it

    calls: list[str] = []

    class Summarizer:
        def __init__(self, model: str) -> None:
            self.llm = Llm(model)
            self.ready = threading.Event()

        @cached(namespace="s", cache=cache, key_attrs=["llm.model"])
        def summarize(self, text: str) -> str:
            calls.append(self.llm.model)
            return f"{self.llm.model}/{text}"

    a, b = Summarizer("llama3.2:3b"), Summarizer("qwen2.5:7b")
    assert a.summarize("t") == "llama3.2:3b/t" and b.summarize("t") == "qwen2.5:7b/t"
    assert Summarizer("llama3.2:3b").summarize("t") == "llama3.2:3b/t"
    assert calls == ["llama3.2:3b", "qwen2.5:7b"]


def test_nested_member_objects_are_keyed_by_their_own_settings(cache: Any) -> None:
    class Tokenizer:
        def __init__(self, lowercase: bool) -> None:
            self.lowercase = lowercase

    class Counter:
        def __init__(self, lowercase: bool) -> None:
            self.tok = Tokenizer(lowercase)
            self.lock = threading.RLock()
            self.logger = logging.LoggerAdapter(logging.getLogger("x"), {})

        @cached(namespace="s", cache=cache)
        def words(self, text: str) -> list[str]:
            return (text.lower() if self.tok.lowercase else text).split()

    assert Counter(True).words("A b") == ["a", "b"]
    assert Counter(False).words("A b") == ["A", "b"]


def test_a_member_with_no_key_form_runs_uncached_and_says_which(cache: Any, caplog: Any) -> None:
    """An opaque member that is no known resource can't be keyed: the call runs uncached (never a wrong
    shared answer), and the warning names the member and the way out (key_attrs)."""
    calls: list[int] = []

    class Odd:
        def __init__(self) -> None:
            self.opaque = iter([1, 2])  # a list_iterator: no attributes, no encoding

        @cached(namespace="s", cache=cache)
        def f(self, x: int) -> int:
            calls.append(x)
            return x

    with caplog.at_level(logging.WARNING, logger="infra.cache"):
        assert Odd().f(1) == 1 and Odd().f(1) == 1
    assert calls == [1, 1]
    assert "opaque" in caplog.text and "key_attrs" in caplog.text


def test_resource_classification() -> None:
    import ollama

    from infra.cache.identity import MethodIdentity, is_resource

    assert is_resource(ollama.Client(host="http://127.0.0.1:9"))
    assert is_resource(threading.Lock()) and is_resource(logging.getLogger("x"))
    assert is_resource(threading.Event())  # by package: the standard library's handles
    assert not is_resource(1.5) and not is_resource({"a": 1})
    # data is configuration whatever package defines it, and a user's class named like data is kept
    assert not is_resource(ollama.Options(temperature=0.3))

    class CalendarEvent:
        pass

    class ChatSession:
        pass

    assert not is_resource(CalendarEvent()) and not is_resource(ChatSession())
    with pytest.raises(TypeError):
        MethodIdentity("weight")  # a string, not a list: refused at decoration time


def test_include_self_with_a_client_member_is_cached(worker: Any, make_config: Any) -> None:
    """main: ``include_self: true`` made every call of an instance holding an ollama.Client uncacheable
    (``cannot build a cache key from a ollama._client.Client``); now it is keyed like the default."""
    from infra.integrate import enable_caching_for_worker

    target = f"{worker.__name__}:HybridScorer"
    classes = enable_caching_for_worker(
        make_config({"wrap": [{"target": target, "methods": ["score"], "include_self": True}]})
    )
    H = classes["HybridScorer"]
    assert [H(weight=2.0).score("abc") for _ in range(3)] == [6.0, 6.0, 6.0]
    assert H(weight=3.0).score("abc") == 9.0
    assert len(worker.CALLS) == 2


def test_settings_that_compare_equal_but_differ_are_keyed_apart(cache: Any) -> None:
    """The hot path's fingerprint is exact: 0.0 / -0.0 and 1 / True / 1.0 are different settings."""

    class W:
        def __init__(self, w: Any) -> None:
            self.w = w

        @cached(namespace="z", cache=cache)
        def f(self, x: int) -> str:
            return repr(self.w)

    values = [0.0, -0.0, 0.0, 1, True, 1.0, 1, -0.0]
    assert [W(v).f(1) for v in values] == [repr(v) for v in values]


_scalar_values = st.sampled_from([None, False, True, 0, 1, 0.0, -0.0, 1.0, float("inf"), "", "a"])
_values = _scalar_values | st.lists(_scalar_values, max_size=2) | st.tuples(_scalar_values)
_names = st.sampled_from(["weight", "model", "_model", "_calls", "opts", "_lock"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_names, min_size=1, max_size=2, unique=True),
    st.lists(_values, min_size=2, max_size=8),
    st.integers(0, 1),
)
@example(names=["weight"], pool=[0.0, -0.0], x=0)
@example(names=["weight", "opts"], pool=[1, True, 1.0, [1], (1,)], x=1)
def test_the_fast_fingerprint_agrees_with_the_full_encoding(
    names: list[str], pool: list[Any], x: int
) -> None:
    """The hot path (a per-class layout picking kept values, scalars taken as they are) is a shortcut for
    ``identity.key_value``: with the memo holding every state's entry, each state still gets the key of its
    own full encoding, so no two states that key differently ever share a memo entry (0.0 / -0.0, 1 / True,
    [1] / (1,) included). The written-out twin checked against the plain one."""

    class Worker:
        def __init__(self, model: str = "m") -> None:
            self._model = model

        @cached(namespace="prop", cache=_NO_CACHE)
        def run(self, x: int) -> int:
            return x

    km = Worker.run.key_maker  # type: ignore[attr-defined]
    # every combination of a few values over one or two attributes: states that differ in one place only
    import itertools

    states = [dict(zip(names, combo, strict=True)) for combo in itertools.product(pool, repeat=len(names))]
    objs = []
    for state in states:
        w = Worker.__new__(Worker)
        w.__dict__.update(state)
        objs.append(w)
    full = []
    for w in objs:
        km.memo.clear()
        full.append(km.key((w, x), {}))
    for w in objs:  # every state's entry in the memo
        km.key((w, x), {})
    assert [km.key((w, x), {}) for w in objs] == full


def test_a_cached_property_filled_on_first_use_does_not_change_the_key(cache: Any) -> None:
    import functools

    calls: list[str] = []

    class Prompter:
        def __init__(self, style: str) -> None:
            self.style = style

        @functools.cached_property
        def template(self) -> str:
            return f"[{self.style}] {{}}"

        @cached(namespace="s", cache=cache)
        def render(self, text: str) -> str:
            calls.append(text)
            return self.template.format(text)

    p = Prompter("calm")
    assert p.render("a") == p.render("a") == "[calm] a"
    assert calls == ["a"]
