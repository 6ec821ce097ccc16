"""Call identity of callable and C-implemented members (session 14's new-user trial): a function, lambda or
``functools.partial`` held by the instance is keyed by what decides its answers (closure cells, defaults,
``func`` / ``args`` / ``keywords``), not by its name alone, and an object whose state a C base holds (a
random generator, a deque subclass) is never keyed on a partial ``__dict__``: the call runs uncached and
the warning names the member and the way out. Every case goes through the public API (a ``wrap`` entry
and ``enable_caching_for_worker``, or ``@cached``) and compares with the plain, uncached answers."""

from __future__ import annotations

import functools
import importlib
import json
import logging
import operator
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.cache import Cache, CacheConfig, cached

WORKER = textwrap.dedent("""
    import functools, random

    CALLS = []

    def make_suffixer(suffix):
        return lambda s: s + suffix

    def add(s, suffix):
        return s + suffix

    class B:
        def __init__(self, suffix, seed):
            self.post = make_suffixer(suffix)
            self.post2 = functools.partial(add, suffix=suffix)
            self.rng = random.Random(seed)

        def run(self, x):
            CALLS.append(("run", x))
            return self.post(x)

        def run2(self, x):
            CALLS.append(("run2", x))
            return self.post2(x)
""")


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    name = f"identity_members_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(WORKER)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module(name)
    sys.modules.pop(name, None)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Cache]:
    c = Cache(CacheConfig(path=str(tmp_path / "c.db")))
    yield c
    c.close()


def _enable(tmp_path: Path, wrap: list[dict[str, Any]]) -> Any:
    from infra.config import load_config
    from infra.integrate import enable_caching_for_worker

    path = tmp_path / "perf_config.json"
    data = {"wrap": wrap, "cache": {"path": str(tmp_path / "wc" / "c.db")}, "torch": {"enabled": False}}
    path.write_text(json.dumps(data))
    return enable_caching_for_worker(load_config(path, use_env=False))


@pytest.fixture
def undo() -> Iterator[None]:
    yield
    from infra.integrate import active_handle

    h = active_handle()
    if h is not None:
        h.undo()


def test_the_trial_worker_closure_and_partial_members_key_apart(
    worker: Any, tmp_path: Path, undo: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The reported case: ``B("-en", 1).run("x")`` then ``B("-fr", 2).run("x")`` gave ``x-en`` twice with
    the layer on (the lambda keyed by name only, the partial by ``{}``). Now both equal plain, and a second
    instance configured like the first is a hit (the RNG member is left out by ``key_attrs``)."""
    plain = [worker.B("-en", 1).run("x"), worker.B("-fr", 2).run("x")]
    plain2 = [worker.B("-en", 1).run2("x"), worker.B("-fr", 2).run2("x")]
    assert plain == plain2 == ["x-en", "x-fr"]
    target = f"{worker.__name__}:B"
    _enable(
        tmp_path,
        [{"target": target, "methods": ["run", "run2"], "namespace": "b", "key_attrs": ["post", "post2"]}],
    )
    worker.CALLS.clear()
    assert [worker.B("-en", 1).run("x"), worker.B("-fr", 2).run("x")] == plain
    assert [worker.B("-en", 1).run2("x"), worker.B("-fr", 2).run2("x")] == plain2
    assert len(worker.CALLS) == 4
    assert worker.B("-fr", 7).run("x") == "x-fr" and worker.B("-en", 3).run2("x") == "x-en"
    assert len(worker.CALLS) == 4  # same closure / partial, another seed: hits


def test_the_trial_worker_as_written_is_right_and_says_why_it_is_uncached(
    worker: Any, tmp_path: Path, undo: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The trial's config exactly (no key_attrs): the ``random.Random`` member can't be keyed, so the
    calls run uncached, with the right answers and a warning naming ``rng`` and ``key_attrs``."""
    _enable(tmp_path, [{"target": f"{worker.__name__}:B", "methods": ["run", "run2"], "namespace": "b"}])
    with caplog.at_level(logging.WARNING, logger="infra.cache"):
        assert [worker.B("-en", 1).run("x"), worker.B("-fr", 2).run("x")] == ["x-en", "x-fr"]
        assert [worker.B("-en", 1).run2("x"), worker.B("-fr", 2).run2("x")] == ["x-en", "x-fr"]
    assert "'rng'" in caplog.text and "random generator" in caplog.text and "key_attrs" in caplog.text


def _counting(cache: Cache, member: Any) -> tuple[Any, list[Any]]:
    """An instance holding ``member``, whose cached ``f(x)`` returns ``member(x)`` and counts runs."""
    runs: list[Any] = []

    class Holder:
        def __init__(self, fn: Any) -> None:
            self.fn = fn

        @cached(namespace="m", cache=cache)
        def f(self, x: Any) -> Any:
            runs.append(x)
            return self.fn(x)

    return Holder, runs


def test_a_closure_over_a_config_object_follows_its_settings(cache: Cache) -> None:
    class Cfg:
        def __init__(self, scale: int) -> None:
            self.scale = scale

    def make(cfg: Cfg) -> Any:
        return lambda x: x * cfg.scale

    Holder, runs = _counting(cache, None)
    cfg = Cfg(2)
    h = Holder(make(cfg))
    assert h.f(3) == 6
    cfg.scale = 5  # the closed-over object changed: a new key, the new answer
    assert h.f(3) == 15
    assert Holder(make(Cfg(2))).f(3) == 6  # an equal config in another closure: a hit
    assert runs == [3, 3]


def test_partial_of_partial_defaults_and_kwdefaults_are_keyed(cache: Cache) -> None:
    def join(a: str, b: str, c: str = "!", *, d: str = "?") -> str:
        return a + b + c + d

    class NoFlatten(functools.partial):  # type: ignore[type-arg]
        """A partial subclass: functools doesn't flatten it, so this is a real partial of a partial."""

    Holder, runs = _counting(cache, None)
    inner = NoFlatten(join, "<")
    assert Holder(functools.partial(inner, c=".")).f("x") == "<x.?"
    assert Holder(functools.partial(inner, c=",")).f("x") == "<x,?"
    assert Holder(functools.partial(NoFlatten(join, ">"), c=",")).f("x") == ">x,?"
    assert Holder(functools.partial(inner, c=".")).f("x") == "<x.?"  # equal partials: a hit
    assert len(runs) == 3

    def with_defaults(k: str) -> Any:
        def f(x: str, sep: str = k, *, end: str = k) -> str:
            return x + sep + end

        return f

    assert Holder(with_defaults("-")).f("x") == "x--"
    assert Holder(with_defaults("+")).f("x") == "x++"  # same qualname, no closure: defaults tell apart
    assert len(runs) == 5


def test_two_lambdas_with_one_qualname_are_told_apart(cache: Cache) -> None:
    Holder, runs = _counting(cache, None)
    pick = [(lambda x: x + 1), (lambda x: x * 10)]  # both ...<locals>.<lambda>, no closure
    assert Holder(pick[0]).f(2) == 3
    assert Holder(pick[1]).f(2) == 20
    assert Holder(pick[0]).f(2) == 3 and len(runs) == 2


def test_bound_builtins_patterns_and_operator_callables(cache: Cache) -> None:
    Holder, runs = _counting(cache, None)
    assert Holder(", ".join).f(("a", "b")) == "a, b"
    assert Holder(" | ".join).f(("a", "b")) == "a | b"
    assert Holder("-en".__add__).f("x") == "-enx"
    assert Holder("-fr".__add__).f("x") == "-frx"
    assert Holder(operator.itemgetter(0)).f("ab") == "a"
    assert Holder(operator.itemgetter(1)).f("ab") == "b"
    assert Holder(operator.methodcaller("split", "a")).f("xay") == ["x", "y"]
    assert Holder(operator.methodcaller("split", "y")).f("xay") == ["xa", ""]
    assert len(runs) == 8

    class Matcher:
        def __init__(self, pattern: re.Pattern[str]) -> None:
            self.pattern = pattern

        @cached(namespace="m", cache=cache)
        def find(self, text: str) -> list[str]:
            return self.pattern.findall(text)

    assert Matcher(re.compile("a+")).find("aaAb") == ["aa"]
    assert Matcher(re.compile("a+", re.I)).find("aaAb") == ["aaA"]


def test_an_empty_closure_cell_runs_uncached_and_names_the_member(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    def make() -> Any:
        def f(x: int) -> int:
            return x + later  # noqa: F821 (deleted below: the cell is empty)

        fn = f
        later = 1
        del later
        return fn

    Holder, runs = _counting(cache, None)
    with caplog.at_level(logging.WARNING, logger="infra.cache"), pytest.raises(NameError):
        Holder(make()).f(1)
    assert runs == [1]  # it ran (uncached): the function's own error, not a cache one
    assert "fn.<closure>[0]" in caplog.text and "later" in caplog.text and "key_attrs" in caplog.text


def test_a_closure_over_an_unkeyable_value_runs_uncached(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    it = iter([0])
    Holder, runs = _counting(cache, None)
    with caplog.at_level(logging.WARNING, logger="infra.cache"):
        assert Holder(lambda x: (x, it)).f(1) == (1, it)
        assert Holder(lambda x: (x, it)).f(1) == (1, it)
    assert runs == [1, 1]
    assert "fn.<closure>[0]" in caplog.text


def test_a_recursive_closure_is_keyed(cache: Cache) -> None:
    def make(step: int) -> Any:
        def down(n: int) -> int:
            return 0 if n <= 0 else step + down(n - step)

        return down

    Holder, runs = _counting(cache, None)
    assert Holder(make(1)).f(4) == 4
    assert Holder(make(2)).f(4) == 4
    assert Holder(make(1)).f(4) == 4 and len(runs) == 2


def test_a_random_generator_member_runs_uncached_unless_key_attrs_leaves_it_out(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    """Decision: an RNG is never keyed (its state moves per draw: every call would miss; a method that
    draws isn't deterministic). Uncached with a hint; ``key_attrs`` naming the settings caches it."""
    import random

    runs: list[int] = []

    class Sampler:
        def __init__(self, temperature: float, seed: int) -> None:
            self.temperature = temperature
            self.rng = random.Random(seed)

        @cached(namespace="r", cache=cache)
        def scale(self, x: int) -> float:
            runs.append(x)
            return x * self.temperature

        @cached(namespace="r", cache=cache, key_attrs=["temperature"])
        def scale2(self, x: int) -> float:
            runs.append(x)
            return x * self.temperature

    with caplog.at_level(logging.WARNING, logger="infra.cache"):
        assert Sampler(0.5, 1).scale(2) == 1.0 and Sampler(0.5, 1).scale(2) == 1.0
    assert runs == [2, 2]
    assert "'rng'" in caplog.text and "key_attrs" in caplog.text
    assert Sampler(0.5, 1).scale2(2) == 1.0 and Sampler(0.5, 9).scale2(2) == 1.0
    assert Sampler(2.0, 1).scale2(2) == 4.0
    assert runs == [2, 2, 2, 2]


def test_a_subclass_of_a_c_type_is_not_keyed_on_its_partial_dict(cache: Cache) -> None:
    """A deque subclass with a public attribute: ``__dict__`` holds ``name`` but not the items, so keying
    on it would share answers between different contents; it runs uncached instead. A class defining its
    own ``__getstate__`` over C state is keyed by that."""
    import collections

    class Named(collections.deque):  # type: ignore[type-arg]
        def __init__(self, items: list[int]) -> None:
            super().__init__(items)
            self.name = "q"

        def __call__(self, i: int) -> int:
            return int(self[i])

    class Stated(collections.deque):  # type: ignore[type-arg]
        def __getstate__(self) -> object:
            return list(self)

        def __call__(self, i: int) -> int:
            return int(self[i])

    Holder, runs = _counting(cache, None)
    assert Holder(Named([1])).f(0) == 1 and Holder(Named([2])).f(0) == 2
    assert Holder(Named([1])).f(0) == 1 and len(runs) == 3  # uncached, right answers
    assert Holder(Stated([1])).f(0) == 1 and Holder(Stated([2])).f(0) == 2
    assert Holder(Stated([1])).f(0) == 1 and len(runs) == 5  # keyed by its state: the third is a hit


def test_common_members_keep_their_keys() -> None:
    """Plain settings, dataclasses, pydantic models, nested objects, resources and bound methods key as
    before; a class deriving from a C-layout-free base (Generic, ABC) is still keyed by its ``__dict__``."""
    import abc
    import dataclasses
    import threading
    import typing

    import pydantic

    from infra.cache.identity import MethodIdentity

    T = typing.TypeVar("T")

    @dataclasses.dataclass
    class D:
        a: int = 1

    class P(pydantic.BaseModel):
        a: int = 1

    class Tok(typing.Generic[T], abc.ABC):
        def __init__(self, lower: bool) -> None:
            self.lower = lower

        def split(self, s: str) -> list[str]:
            return s.split()

    class W:
        def __init__(self, lower: bool) -> None:
            self.w, self.d, self.p, self.tok = 1.5, D(), P(), Tok(lower)
            self.lock, self.method = threading.Lock(), self.tok.split

    ident = MethodIdentity()
    assert ident.key_value(W(True)) == (
        "perf-infra/instance",
        f"{W.__module__}.{W.__qualname__}",
        {
            "w": 1.5,
            "d": D(),
            "p": P(),
            "tok": ("object", f"{Tok.__module__}.{Tok.__qualname__}", {"lower": True}),
            "method": (
                "method",
                f"{Tok.split.__module__}.{Tok.split.__qualname__}",
                ("object", f"{Tok.__module__}.{Tok.__qualname__}", {"lower": True}),
            ),
        },
    )
    assert ident.key_value(W(True)) != ident.key_value(W(False))


def test_members_referring_back_to_the_instance_are_keyed(cache: Cache) -> None:
    """``self.post = lambda s: self.fmt(s)`` and ``self.handler = self.fmt`` close over the instance itself:
    keyed as a back-reference to it (its settings are in the key already), not walked until the depth
    limit (which would make every such worker uncacheable)."""
    runs: list[str] = []

    class Fmt:
        def __init__(self, suffix: str) -> None:
            self.suffix = suffix
            self.post = lambda s: self.fmt(s)
            self.handler = self.fmt

        def fmt(self, s: str) -> str:
            return s + self.suffix

        @cached(namespace="f", cache=cache)
        def run(self, x: str) -> str:
            runs.append(x)
            return str(self.post(x)) + self.handler(x)

    assert Fmt("-en").run("x") == "x-enx-en"
    assert Fmt("-fr").run("x") == "x-frx-fr"
    assert Fmt("-en").run("x") == "x-enx-en"
    assert runs == ["x", "x"]


def test_function_and_partial_members_take_the_key_memo_and_agree_with_the_full_key() -> None:
    """Function / partial members over plain values get a memo fingerprint (no full encoding per hit), and
    with the memo holding every state's entry each state still gets its own full key: closures differing
    in a cell value (1 / True / 1.0, 0.0 / -0.0), defaults, partial args, or code (two lambdas), a closure
    over a mutable list changed in place, and an empty cell (no fingerprint: the slow path)."""
    from infra.cache.identity import MethodIdentity

    nocache = Cache(CacheConfig(enabled=False))

    class W:
        def __init__(self, fn: Any) -> None:
            self.fn = fn

        @cached(namespace="fp", cache=nocache)
        def run(self, x: int) -> int:
            return x

    def closure(value: Any) -> Any:
        return lambda s: (s, value)

    def with_default(value: Any) -> Any:
        def f(s: Any, d: Any = value) -> Any:
            return s, d

        return f

    shared: list[int] = [1]
    objs = [W(closure(v)) for v in (1, True, 1.0, 0.0, -0.0, "1", (1,), [1], None)]
    objs += [W(with_default(v)) for v in (1, True, 2)]
    objs += [W(functools.partial(with_default(1), v)) for v in (1, True, "a")]
    objs += [W(lambda s: s + 1), W(lambda s: s + 2), W(lambda s: shared)]
    km = W.run.key_maker  # type: ignore[attr-defined]
    from infra.cache.decorator import _fid

    assert all(MethodIdentity().fingerprint(w, _fid) is not None for w in objs)
    full = []
    for w in objs:
        km.memo.clear()
        full.append(km.key((w, 0), {}))
    assert len(set(full)) == len(full)
    for w in objs:
        km.key((w, 0), {})
    assert [km.key((w, 0), {}) for w in objs] == full
    before = km.key((objs[-1], 0), {})
    shared.append(2)  # mutated in place: a new key, through the memo
    km_full = km.full_key((objs[-1], 0), {})
    assert km.key((objs[-1], 0), {}) == km_full != before

    def empty() -> Any:
        def f() -> Any:
            return gone  # noqa: F821 (deleted below: the cell is empty)

        gone = 1
        del gone
        return f

    assert MethodIdentity().fingerprint(W(empty()), _fid) is None


def test_repeated_slow_path_calls_keep_no_tracebacks(cache: Cache) -> None:
    """A member the key memo can't represent (a dataclass) sends every call through the memo's refusal;
    those refusals must not pile up: one reused exception instance kept each raise's traceback (frames
    included) chained on itself, ~8 entries a call, for the life of the process."""
    import dataclasses
    import gc
    import tracemalloc

    @dataclasses.dataclass
    class Opts:
        lang: str

    class Worker:
        def __init__(self) -> None:
            self.opts = Opts("en")

        @cached(cache=cache, namespace="tb")
        def run(self, x: int) -> int:
            return x

    w = Worker()
    for _ in range(200):  # warm: the entry stored, the L1 filled, lazy imports done
        w.run(1)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(5000):
            assert w.run(1) == 1
        gc.collect()
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    # 5,000 kept tracebacks of several frames each are megabytes; a steady state is a few kilobytes of
    # tracemalloc's own bookkeeping and caches
    assert grown < 256 * 1024, f"{grown} bytes kept by 5,000 hits"
