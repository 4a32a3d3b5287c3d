"""Counts handlers that are running, so `close` can wait for them to finish."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


class InFlight:
    def __init__(self) -> None:
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.tasks: set[asyncio.Task] = set()

    @property
    def running(self) -> int:
        return self._running

    @contextmanager
    def track(self) -> Iterator[None]:
        task = asyncio.current_task()
        self._running += 1
        self._idle.clear()
        if task is not None:
            self.tasks.add(task)
        try:
            yield
        finally:
            self._running -= 1
            if task is not None:
                self.tasks.discard(task)
            if self._running == 0:
                self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing runs; False if handlers were still running after `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            # deliveries already read from the socket start their handlers a few loop turns later
            for _ in range(3):
                await asyncio.sleep(0)
            if self._running == 0:
                return True
            try:
                await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return False

    def cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()
