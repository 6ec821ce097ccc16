"""One TTL rule everywhere (new-user trial, session 14): ``Cache.set``, ``@cached(ttl=...)``,
``cached_class``, config fields and ``warm --ttl`` read a TTL through ``infra.cache.ttl.parse_ttl``, which
reads strings with ``infra.config.parse_duration``; 0 means "never expires" everywhere; a negative TTL is a
``ValueError`` naming the value; the hot path (None, int, float, a string seen before) makes no call."""

from __future__ import annotations

from typing import Any

import pytest

import infra
from infra.cache import Cache, cached
from infra.cache.ttl import parse_ttl


@pytest.mark.parametrize(
    ("ttl", "seconds"),
    [
        (None, None),
        (0, 0.0),
        (0.0, 0.0),
        (90, 90.0),
        (1.5, 1.5),
        ("1h", 3600.0),
        ("30 days", 2592000.0),
        ("5 sec", 5.0),
        ("1 minute", 60.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1 MIN", 60.0),
        ("0", 0.0),
    ],
)
def test_parse_ttl_reads_every_form(ttl: Any, seconds: float | None) -> None:
    assert parse_ttl(ttl) == seconds
    assert parse_ttl(ttl) == seconds  # a string the second time: from the memo, same answer


@pytest.mark.parametrize("bad", [-1, -0.5, "-5s", "5 fortnights", "soon", True, float("nan"), "1h30"])
def test_parse_ttl_rejects_naming_where_and_value(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"^@cached\(ttl=\.\.\.\): expected a duration"):
        parse_ttl(bad, what="@cached(ttl=...)")


def test_zero_never_expires_in_set_and_cached(cache: Cache) -> None:
    cache.set("ns", "k", "v", ttl=0)
    cache.set("ns", "s", "v", ttl="0s")
    assert cache.get("ns", "k") == "v" and cache.get("ns", "s") == "v"
    calls: list[int] = []

    @cached(namespace="ns0", ttl=0, cache=cache)
    def f(x: int) -> int:
        calls.append(x)
        return x

    assert [f(1), f(1)] == [1, 1] and calls == [1]


@pytest.mark.parametrize("bad", [-1, "-1h"])
def test_negative_ttl_is_an_error_everywhere(cache: Cache, bad: Any) -> None:
    with pytest.raises(ValueError, match=r"ttl.*of 0 or more"):
        cache.set("ns", "k", "v", ttl=bad)
    with pytest.raises(ValueError, match=r"@cached\(ttl=\.\.\.\).*of 0 or more"):
        cached(ttl=bad, cache=cache)

    class Scorer:
        def score(self, x: int) -> int:
            return x

    with pytest.raises(ValueError, match=r"ttl.*of 0 or more"):
        infra.cached_class(Scorer, methods=["score"], ttl=bad, cache=cache)


def test_cached_class_and_wrap_entries_take_ttl_zero(cache: Cache) -> None:
    """Was "ttl must be a positive duration": 0 now means what it means for @cached and Cache.set."""
    from infra.config.sections.wrap import WrapEntry
    from infra.integrate._wrap import entry_settings

    class Scorer:
        def score(self, x: int) -> int:
            return x

    Cached = infra.cached_class(Scorer, methods=["score"], ttl=0, cache=cache)
    assert Cached().score(2) == 2
    settings = entry_settings(WrapEntry(target="m:Scorer", methods=("score",), ttl=0.0))
    assert settings is not None and settings.ttl == 0.0


def test_many_distinct_strings_stay_right() -> None:
    """The string memo is bounded (cleared when full): past the bound every answer is still right."""
    for i in range(600):
        assert parse_ttl(f"{i}s") == float(i)
        assert parse_ttl(f"{i}s") == float(i)
