"""Token budget: take prefetched items in input order until the budget is spent (seed 000, Task 1).

The pattern it replaces: fetch neighbours concurrently, then walk the results in order appending
lines while an estimated token count stays under a target. ``TokenBudget`` is that accumulator,
``take_within_budget`` the one-call form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

__all__ = ["TokenBudget", "approx_tokens", "take_within_budget"]


def approx_tokens(text: str) -> int:
    """Cheap token estimate: one token per four characters (the seed's ``len(text) // 4``)."""
    return len(text) // 4


class TokenBudget:
    """An in-order accumulator of text parts under a token limit.

    ``add(text)`` appends and returns True while the part fits; the first part that doesn't fit
    closes the budget (``exhausted``) and every later ``add`` returns False, so a short item further
    down can never jump ahead of a long one that was refused (order is the ranking).
    """

    __slots__ = ("_count", "exhausted", "max_tokens", "parts", "used")

    def __init__(self, max_tokens: int, *, count: Callable[[str], int] = approx_tokens) -> None:
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, not {max_tokens!r}")
        self.max_tokens = max_tokens
        self._count = count
        self.parts: list[str] = []
        self.used = 0
        self.exhausted = False

    @property
    def remaining(self) -> int:
        """Tokens still available."""
        return self.max_tokens - self.used

    def add(self, text: str) -> bool:
        """Append ``text`` if it fits; False (and the budget closes) if it doesn't."""
        if self.exhausted:
            return False
        cost = self._count(text)
        if self.used + cost > self.max_tokens:
            self.exhausted = True
            return False
        self.used += cost
        self.parts.append(text)
        return True

    def text(self, sep: str = "\n") -> str:
        """The accepted parts joined with ``sep``."""
        return sep.join(self.parts)

    def __repr__(self) -> str:
        return f"TokenBudget(used={self.used}, max_tokens={self.max_tokens}, parts={len(self.parts)})"


def take_within_budget(
    items: Iterable[str], max_tokens: int, *, count: Callable[[str], int] = approx_tokens
) -> list[str]:
    """The longest prefix of ``items`` whose estimated tokens total at most ``max_tokens``."""
    budget = TokenBudget(max_tokens, count=count)
    for item in items:
        if not budget.add(item):
            break
    return budget.parts
