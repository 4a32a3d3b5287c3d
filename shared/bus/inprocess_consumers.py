"""The in-process bus's consumers: a dispatcher per consumer, a task per message, and settling.

A consumer registers with its broker queue while it runs, so the queue can tell how many it has.
A delivery from a worker's affinity queue (a `Queue` with `home`) is retried in, and dead-lettered to the
`.dlq` of, the shared queue it belongs to, as the RabbitMQ bus does.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from shared.bus import policy
from shared.bus.base import BusError, Delivery, Subscription
from shared.bus.inprocess_queue import BrokerQueue, Envelope
from shared.contracts.cloudevents import CloudEvent
from shared.contracts.topology import DEAD_LETTERS, Queue
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
        self._source: BrokerQueue | None = None  # the queue it is registered with while it runs
        self._handlers: set[asyncio.Task] = set()

    def start(self) -> None:
        """Start taking messages; raises `BusError` when the queue does not exist."""
        if self._dispatcher is None or self._dispatcher.done():
            source = self.bus.broker.queue(self.queue)
            source.register(self)
            self._source = source
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch(source))

    def stop(self) -> asyncio.Task | None:
        """Take no more messages; running handlers go on. Returns the cancelled dispatcher."""
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            dispatcher.cancel()
        source, self._source = self._source, None
        if source is not None:
            source.leave(self)  # a single active consumer hands over at once
        return dispatcher

    async def close(self) -> None:
        self.stop()
        self.bus._forget_consumer(self)

    async def _dispatch(self, queue: BrokerQueue) -> None:
        credit = asyncio.Semaphore(self.prefetch)
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
            if self.spec.retry_queue != self.spec.name:
                self.envelope.expires_at = None  # a new arrival in the shared queue, under its own rules
            self.bus.broker.requeue(self.spec.retry_queue, self.envelope)
        elif outcome.action is policy.Action.DEAD_LETTER:
            self._dead_letter(outcome, delivery_count)

    def _dead_letter(self, outcome: policy.Outcome, count: int) -> None:
        spec, envelope = self.spec, self.envelope
        if not spec.dead_letter:
            log.error("bus.dropped_without_dead_letter_queue", queue=spec.name, reason=outcome.reason)
            return
        drop = (policy.ATTEMPT_HEADER, policy.DEATH_HEADER)
        headers = {k: v for k, v in envelope.headers.items() if k not in drop}
        headers.update(policy.death_header(outcome, queue=spec.name, count=count, routing_key=envelope.routing_key))
        dead = Envelope(
            envelope.body,
            DEAD_LETTERS,
            spec.retry_queue,  # an affinity queue's dead letters land in its shared queue's .dlq
            envelope.priority,
            envelope.correlation_id,
            envelope.reply_to,
            headers,
        )
        try:
            self.bus.broker.publish(dead)
        except BusError as exc:
            log.error("bus.dropped_dead_letter", queue=spec.name, error=str(exc))


def to_delivery(bus: InProcessBus, queue: str, envelope: Envelope) -> Delivery:
    headers = dict(envelope.headers)
    return Delivery(
        event=CloudEvent.from_bytes(envelope.body),
        queue=queue,
        routing_key=envelope.routing_key,
        delivery_count=envelope.delivery_count,
        priority=envelope.priority,
        correlation_id=envelope.correlation_id,
        reply_to=envelope.reply_to,
        headers=headers,
        death=policy.parse_death(headers),
        _bus=bus,
    )
