"""Deficit round-robin over per-org queues: pure bookkeeping, no I/O.

Orgs with waiting requests form a ring. The org at the front has been given one quantum of credit
(its deficit) on arriving there; it may send its head request when the request's cost fits its deficit,
and keeps the turn while the next one fits too. Otherwise the turn passes and the next org gets its
quantum. Over rounds every org sends about the same cost (tokens), however many requests it queued:
a flood waits behind its own requests. Credit is capped at one quantum beyond the head's cost so an
org that could not send for a while (at its own in-flight cap) does not return with a burst.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class DeficitRoundRobin(Generic[T]):
    def __init__(self, quantum: int, cost: Callable[[T], int]):
        if quantum < 1:
            raise ValueError("quantum must be at least 1")
        self.quantum = quantum
        self._cost = cost
        self._queues: dict[str, deque[T]] = {}
        self._ring: deque[str] = deque()
        self._deficit: dict[str, int] = {}

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def waiting(self, key: str) -> int:
        return len(self._queues.get(key, ()))

    @property
    def orgs(self) -> int:
        return len(self._ring)

    def push(self, key: str, item: T) -> None:
        queue = self._queues.get(key)
        if queue is None:
            self._queues[key] = deque([item])
            self._ring.append(key)
            self._deficit[key] = 0
            if len(self._ring) == 1:
                self._top_up()
        else:
            queue.append(item)

    def discard(self, key: str, item: T) -> bool:
        """Take a request out wherever it waits (its caller left); False when it was not waiting."""
        queue = self._queues.get(key)
        if queue is None or item not in queue:
            return False
        queue.remove(item)
        if not queue:
            self._drop(key)
        return True

    def front(self) -> tuple[str, T] | None:
        """Whose turn it is and the request it would send."""
        if not self._ring:
            return None
        key = self._ring[0]
        return key, self._queues[key][0]

    def affordable(self) -> bool:
        """Whether the front org's credit covers its head request."""
        front = self.front()
        return front is not None and self._cost(front[1]) <= self._deficit[front[0]]

    def take(self) -> T:
        """Send the front org's head request; the org keeps the turn while it has credit."""
        key = self._ring[0]
        item = self._queues[key].popleft()
        self._deficit[key] -= self._cost(item)
        if not self._queues[key]:
            self._drop(key)
        return item

    def skip(self) -> None:
        """Pass the turn to the next org (the front one cannot send now), which gets its quantum."""
        if self._ring:
            self._ring.rotate(-1)
            self._top_up()

    def fast_forward(self) -> None:
        """Every waiting org is short of credit: give each the rounds of quanta the first of them still needs,
        at once, instead of passing the turn around that many times (a request can cost 2**20 tokens)."""
        if not self._ring:
            return
        rounds = min(-(-(self._cost(self._queues[k][0]) - self._deficit[k]) // self.quantum) for k in self._ring)
        if rounds > 1:
            for key in self._ring:
                self._deficit[key] += (rounds - 1) * self.quantum

    def _top_up(self) -> None:
        key = self._ring[0]
        head_cost = self._cost(self._queues[key][0])
        self._deficit[key] = min(self._deficit[key] + self.quantum, head_cost + self.quantum)

    def _drop(self, key: str) -> None:
        was_front = self._ring and self._ring[0] == key
        self._ring.remove(key)
        del self._queues[key], self._deficit[key]
        if was_front and self._ring:
            self._top_up()
