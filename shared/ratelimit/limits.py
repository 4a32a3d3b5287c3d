"""What a limiter is asked and what it answers.

A limit is a counter per key and window: the window opens with the first cost counted against the key
and closes `window_seconds` later. `acquire` takes every limit it is given or none of them, so a request
refused for its tokens does not also use up one of its requests.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class LimiterUnavailable(Exception):
    """The limiter's store could not answer (Redis down, a timeout): the caller decides open or closed."""


@dataclass(frozen=True)
class Limit:
    name: str  # what it counts: "requests", "tokens"
    key: str  # whose counter: e.g. "org:org_1:requests"
    limit: int  # the most a window may count
    cost: int  # what this call adds


@dataclass(frozen=True)
class LimitState:
    limit: Limit
    used: int  # counted in the current window, this call included when it was allowed
    reset_seconds: float  # until the window closes
    counted: bool = False  # whether this call's cost was counted (the decision allowed it)

    @property
    def remaining(self) -> int:
        return max(0, self.limit.limit - self.used)

    @property
    def exceeded(self) -> bool:
        return self.used + (0 if self.counted else self.limit.cost) > self.limit.limit


@dataclass(frozen=True)
class Decision:
    allowed: bool
    states: tuple[LimitState, ...]

    def refused_by(self) -> list[LimitState]:
        return [s for s in self.states if not self.allowed and s.limit.cost and s.exceeded]

    def retry_after(self) -> float:
        refused = self.refused_by()
        return max((s.reset_seconds for s in refused), default=0.0)


class Limiter(Protocol):
    async def acquire(self, limits: Sequence[Limit], window_seconds: float) -> Decision:
        """Count every limit's cost in its window if all fit, else none. Raises LimiterUnavailable."""

    async def settle(self, key: str, delta: int) -> None:
        """Correct a counter (an estimate against what was used) in its current window, if one is open."""

    async def close(self) -> None: ...
