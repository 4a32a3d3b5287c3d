"""Which responses were cancelled, and which engine requests run for each response.

A cancel may arrive before its job does (the job still waits in the broker's queue): the
response id is remembered, bounded, so the job is dropped when it arrives.
"""
from __future__ import annotations

from collections import OrderedDict, defaultdict


class CancelBook:
    def __init__(self, capacity: int = 10_000):
        self.capacity = capacity
        self._cancelled: OrderedDict[str, None] = OrderedDict()
        self._running: defaultdict[str, set[str]] = defaultdict(set)

    def cancel(self, response_id: str) -> set[str]:
        """Remember the cancel; returns the engine requests now running for the response."""
        self._cancelled[response_id] = None
        self._cancelled.move_to_end(response_id)
        while len(self._cancelled) > self.capacity:
            self._cancelled.popitem(last=False)
        return set(self._running.get(response_id, ()))

    def is_cancelled(self, response_id: str) -> bool:
        return response_id in self._cancelled

    def track(self, response_id: str, request_id: str) -> None:
        self._running[response_id].add(request_id)

    def untrack(self, response_id: str, request_id: str) -> None:
        running = self._running.get(response_id)
        if running is not None:
            running.discard(request_id)
            if not running:
                del self._running[response_id]
