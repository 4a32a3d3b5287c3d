"""The in-process bus's consumers: a dispatcher per consumer, a task per message, and settling."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from shared.bus import policy
from shared.bus.base import BusError, Subscription
from shared.bus.inprocess_broker import Envelope
from shared.contracts.topology import Queue
from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.bus.inprocess import InProcessBus

log = get_logger("shared.bus.inprocess")

OnEnvelope = Callable[[int, Envelope], Awaitable[None]]


class Consumer(Subscription):
    """Takes up to `prefetch` messages at a time off one queue, each into its own handler task."""

    def __init__(
        self,
        bus: InProcessBus,
        queue: str,
        on_envelope: OnEnvelope,
        prefetch: int,
        *,
        acked: bool,
        private: bool = False,
    ) -> None:
        self.bus, self.queue, self.on_envelope = bus, queue, on_envelope
        self.prefetch, self.acked, self.private = max(1, prefetch), acked, private
        self._dispatcher: asyncio.Task | None = None
        self._handlers: set[asyncio.Task] = set()

    def start(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    def stop(self) -> asyncio.Task | None:
        """Take no more messages; running handlers go on. Returns the cancelled dispatcher."""
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            dispatcher.cancel()
        try:
            self.bus.broker.queue(self.queue).leave(self)  # a single active consumer hands over at once
        except BusError:
            pass  # the queue is gone (a private one, deleted with its connection)
        return dispatcher

    async def close(self) -> None:
        self.stop()
        self.bus._forget_consumer(self)

    async def _dispatch(self) -> None:
        credit = asyncio.Semaphore(self.prefetch)
        queue = self.bus.broker.queue(self.queue)
        while True:
            await credit.acquire()
            try:
                await queue.wait_turn(self)
                envelope = await queue.get()
            except BaseException:
                credit.release()
                raise
            tag = self.bus._hold(self.queue, envelope) if self.acked else 0
            task = asyncio.get_running_loop().create_task(self.on_envelope(tag, envelope))
            self._handlers.add(task)
            task.add_done_callback(functools.partial(self._done, credit))

    def _done(self, credit: asyncio.Semaphore, task: asyncio.Task) -> None:
        self._handlers.discard(task)
        credit.release()


class Settler:
    def __init__(self, bus: InProcessBus, spec: Queue, tag: int, envelope: Envelope) -> None:
        self.bus, self.spec, self.tag, self.envelope = bus, spec, tag, envelope

    async def settle(self, outcome: policy.Outcome, delivery_count: int) -> None:
        if not self.bus._release(self.tag):
            log.info("bus.settle_after_connection_loss", queue=self.spec.name)  # already requeued
            return
        if outcome.action is policy.Action.REQUEUE:
            self.envelope.delivery_count += 1
            self.bus.broker.requeue(self.spec.name, self.envelope)
        elif outcome.action is policy.Action.DEAD_LETTER:
            self.bus._dead_letter(self.spec, self.envelope, outcome, delivery_count)
