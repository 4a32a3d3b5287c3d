"""Each org's share of a worker's batch.

The worker holds more jobs than its batch runs (it prefetches twice `max_batch`), so it chooses which
of them run: at most `max_running` at once, and an org past its `org_cap` only while no other org has a
job waiting (no place stays empty for fairness' sake). A freed place goes to the waiting org with the
fewest jobs running, the longest-waiting job first. The router's fair scheduler decides what reaches the
queue at all; this keeps one org from filling a worker with what it already took.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator


class OrgShare:
    def __init__(self, max_running: int, org_cap: int):
        if max_running < 1 or org_cap < 1:
            raise ValueError("max_running and org_cap must be at least 1")
        self.max_running, self.org_cap = max_running, org_cap
        self.running: dict[str, int] = defaultdict(int)
        self._waiting: dict[str, list[tuple[int, asyncio.Future]]] = defaultdict(list)
        self._order = itertools.count()

    @property
    def total(self) -> int:
        return sum(self.running.values())

    def _others_waiting(self, org_id: str) -> bool:
        return any(queue for org, queue in self._waiting.items() if org != org_id)

    def _may_run(self, org_id: str) -> bool:
        return self.total < self.max_running and (self.running[org_id] < self.org_cap
                                                  or not self._others_waiting(org_id))

    @contextlib.asynccontextmanager
    async def place(self, org_id: str) -> AsyncIterator[None]:
        """Hold one of the batch's places for a job of this org while the block runs."""
        if not self._waiting[org_id] and self._may_run(org_id):
            self.running[org_id] += 1
        else:
            future = asyncio.get_running_loop().create_future()
            entry = (next(self._order), future)
            self._waiting[org_id].append(entry)
            try:
                await future  # granted: its count was taken for it
            except BaseException:
                if entry in self._waiting[org_id]:
                    self._waiting[org_id].remove(entry)
                elif future.done() and not future.cancelled():
                    self._release(org_id)
                raise
        try:
            yield
        finally:
            self._release(org_id)

    def _release(self, org_id: str) -> None:
        self.running[org_id] -= 1
        if not self.running[org_id]:
            del self.running[org_id]
        self._grant_next()

    def _grant_next(self) -> None:
        while self.total < self.max_running:
            candidates = [(self.running.get(org, 0), queue[0][0], org) for org, queue in self._waiting.items()
                          if queue and self._may_run(org)]
            if not candidates:
                return
            _, _, org = min(candidates)
            _, future = self._waiting[org].pop(0)
            if not self._waiting[org]:
                del self._waiting[org]
            if future.done():
                continue  # its job was cancelled while waiting; it takes nothing
            self.running[org] += 1
            future.set_result(None)
