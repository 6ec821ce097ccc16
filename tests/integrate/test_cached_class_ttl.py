"""``infra.cached_class(..., ttl="1h")`` takes the duration strings ``@cached`` and config take (main:
``ValueError: ttl must be a positive number of seconds or None, got '1h'``); a bad one fails at wrap time."""

from __future__ import annotations

from typing import Any

import pytest

import infra
from infra.cache import Cache, CacheConfig

CALLS: list[str] = []


class Scorer:
    def score(self, text: str) -> int:
        CALLS.append(text)
        return len(text)


@pytest.fixture
def cache(tmp_path: Any) -> Any:
    c = Cache(CacheConfig(path=str(tmp_path / "c.db")), export_metrics=False)
    yield c
    c.close()


def test_duration_string_ttl_is_accepted_and_applied(cache: Any) -> None:
    CALLS.clear()
    Cached = infra.cached_class(Scorer, methods=["score"], ttl="1h", cache=cache)
    scorer = Cached()
    assert scorer.score("abcd") == 4
    assert scorer.score("abcd") == 4
    assert CALLS == ["abcd"]
    (entry,) = cache.backend.inspect("Scorer", 10)
    assert entry.expires_at is not None
    assert 3000 <= entry.expires_at - entry.accessed_at <= 4200  # 1h, with the default TTL jitter


# (0 was here: it means "never expires" now, as for @cached and Cache.set; see tests/cache/test_ttl.py)
@pytest.mark.parametrize("bad", ["soon", "-5m", -1, True])
def test_bad_ttl_fails_at_wrap_time(cache: Any, bad: Any) -> None:
    with pytest.raises(ValueError, match="ttl"):
        infra.cached_class(Scorer, methods=["score"], ttl=bad, cache=cache)
