"""TokenBudget / take_within_budget: in order, stop at the first item that doesn't fit."""

from __future__ import annotations

import pytest

from infra.hotpath import TokenBudget, approx_tokens, take_within_budget


def test_approx_tokens_is_a_quarter_of_the_characters() -> None:
    assert approx_tokens("x" * 40) == 10
    assert approx_tokens("abc") == 0


def test_take_within_budget_returns_the_longest_prefix_that_fits() -> None:
    items = ["a" * 40, "b" * 40, "c" * 40]  # 10 tokens each
    assert take_within_budget(items, 25) == ["a" * 40, "b" * 40]
    assert take_within_budget(items, 30) == items
    assert take_within_budget(items, 9) == []


def test_a_short_item_never_jumps_ahead_of_a_refused_long_one() -> None:
    """Order is the ranking: after the first refusal the budget is closed."""
    budget = TokenBudget(10)
    assert budget.add("x" * 20)  # 5
    assert not budget.add("y" * 40)  # 10: doesn't fit
    assert not budget.add("z" * 4)  # 1 would fit, but the budget is closed
    assert budget.parts == ["x" * 20]
    assert budget.exhausted and budget.used == 5 and budget.remaining == 5


def test_nested_use_for_entities_and_their_neighbours() -> None:
    """Seed 000's pre_load_context shape: entity lines, each followed by up to 3 neighbour lines."""
    entities = [("E0", ["n00", "n01"]), ("E1", ["n10"]), ("E2", [])]
    budget = TokenBudget(6, count=lambda _text: 1)
    for name, neighbours in entities:
        if not budget.add(f"- {name}"):
            break
        for n in neighbours[:3]:
            if not budget.add(f"  > {n}"):
                break
    assert budget.text() == "- E0\n  > n00\n  > n01\n- E1\n  > n10\n- E2"


def test_custom_counter_and_negative_budget() -> None:
    assert take_within_budget(["a b c", "d e"], 4, count=lambda t: len(t.split())) == ["a b c"]
    with pytest.raises(ValueError, match="max_tokens"):
        TokenBudget(-1)
