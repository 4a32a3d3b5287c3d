"""The consuming side of the RabbitMQ bus: subscriptions, settling, and turning AMQP messages into deliveries.

Delivery counts: quorum queues number returns in `x-delivery-count`; classic queues
count nothing, so a failed or redelivered message is republished with the next
attempt number in `x-loraserve-attempt` and the original acked, which makes the
count survive consumer crashes (RabbitMQ only flags those as `redelivered`).
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel
from aiormq.exceptions import AMQPError, ChannelInvalidStateError

from shared.bus import dispatch, policy
from shared.bus.base import BusError, Delivery, Handler, Subscription
from shared.bus.inflight import InFlight
from shared.contracts.cloudevents import CloudEvent
from shared.contracts.topology import DEAD_LETTERS, Queue
from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.bus.rabbitmq import RabbitBus

log = get_logger("shared.bus.rabbitmq")

SETTLE_ERRORS = (AMQPError, ChannelInvalidStateError, ConnectionError, BusError, TimeoutError)


class RabbitSubscription(Subscription):
    """One consumer on its own channel; `stop` cancels it, `drain` waits for its handlers."""

    def __init__(self, bus: RabbitBus, channel: AbstractRobustChannel, queue: AbstractQueue, *,
                 restored: bool = True) -> None:
        self.bus, self.channel, self.queue = bus, channel, queue
        self.restored = restored  # consumed again after a reconnect (else `lost` when the connection goes)
        self.inflight = InFlight()
        self.consumer_tag: str | None = None
        self._closed = False

    async def stop(self) -> None:
        if self.lost:
            self.consumer_tag = None  # it died with its connection
        if self.consumer_tag is not None:
            tag, self.consumer_tag = self.consumer_tag, None
            try:
                await self.queue.cancel(tag)
            except SETTLE_ERRORS as exc:
                log.warning("bus.cancel_failed", queue=self.queue.name, error=policy.describe(exc))

    async def drain(self, timeout: float) -> None:
        if not await self.inflight.drain(timeout):
            log.warning("bus.drain_timed_out", queue=self.queue.name, running=self.inflight.running)
            self.cancel()

    def cancel(self) -> None:
        """Cancel running handlers (a crash, or a drain that timed out)."""
        self.inflight.cancel_all()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.stop()
        await self.drain(self.bus.drain_timeout)
        self.cancel()
        await self._close_channel()
        self.bus._forget(self)

    async def _close_channel(self) -> None:
        try:
            await self.channel.close()
        except SETTLE_ERRORS as exc:
            log.debug("bus.channel_close_failed", error=policy.describe(exc))


class EventSubscription(RabbitSubscription):
    """A private queue read at most once, in order, by one worker task."""

    def __init__(
        self, bus: RabbitBus, channel: AbstractRobustChannel, queue: AbstractQueue, handler: Handler
    ) -> None:
        super().__init__(bus, channel, queue)
        self.handler = handler
        self.buffer: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self.worker = asyncio.get_running_loop().create_task(self._work())

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.buffer.put_nowait(message)

    async def _work(self) -> None:
        while True:
            message = await self.buffer.get()
            with self.inflight.track():
                try:
                    await self.handler(to_delivery(self.bus, self.queue.name, message, 1))
                except Exception as exc:  # noqa: BLE001 -- at-most-once: the event is gone either way
                    log.warning("bus.subscriber_failed", queue=self.queue.name, error=policy.describe(exc))

    def cancel(self) -> None:
        super().cancel()
        self.worker.cancel()


class RabbitSettler:
    def __init__(self, bus: RabbitBus, spec: Queue, message: AbstractIncomingMessage) -> None:
        self.bus, self.spec, self.message = bus, spec, message

    async def settle(self, outcome: policy.Outcome, delivery_count: int) -> None:
        try:
            if outcome.action is policy.Action.ACK:
                await self.message.ack()
            elif outcome.action is policy.Action.REQUEUE:
                await self._requeue(delivery_count)
            else:
                await self._dead_letter(outcome, delivery_count)
        except SETTLE_ERRORS as exc:
            # the channel is gone: the broker puts the message back and redelivers it
            log.warning(
                "bus.settle_failed",
                queue=self.spec.name,
                action=outcome.action.value,
                error=policy.describe(exc),
            )

    async def _requeue(self, delivery_count: int) -> None:
        if policy.is_classic(self.spec):
            await record_attempt(self.bus, self.spec, self.message, delivery_count + 1)
        else:
            await self.message.nack(requeue=True)

    async def _dead_letter(self, outcome: policy.Outcome, delivery_count: int) -> None:
        if not self.spec.dead_letter:
            log.error("bus.dropped_without_dead_letter_queue", queue=self.spec.name, reason=outcome.reason)
            await self.message.nack(requeue=False)
            return
        headers = without_bus_headers(self.message.headers)
        headers.update(
            policy.death_header(
                outcome,
                queue=self.spec.name,
                count=delivery_count,
                routing_key=self.message.routing_key or "",
            )
        )
        try:
            await self.bus.publisher.publish(
                DEAD_LETTERS, self.spec.retry_queue, self.message.body, **copied_properties(self.message, headers)
            )
        except BusError as exc:
            # the broker's own dead-lettering still keeps a reason ("rejected") in x-death
            log.warning("bus.dead_letter_publish_failed", queue=self.spec.name, error=str(exc))
            await self.message.nack(requeue=False)
            return
        await self.message.ack()


async def record_attempt(bus: RabbitBus, spec: Queue, message: AbstractIncomingMessage, attempt: int) -> None:
    """Classic queues: put a copy carrying its attempt number back (a worker's affinity queue: into the shared
    queue, for any worker), then ack the original."""
    headers = without_bus_headers(message.headers)
    headers[policy.ATTEMPT_HEADER] = attempt
    try:
        await bus.publisher.publish("", spec.retry_queue, message.body, **copied_properties(message, headers))
    except BusError as exc:
        log.warning("bus.requeue_publish_failed", queue=spec.name, error=str(exc))
        await message.nack(requeue=True)  # comes back flagged redelivered, which still counts
        return
    await message.ack()


def without_bus_headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    drop = (policy.ATTEMPT_HEADER, policy.DEATH_HEADER, "x-delivery-count")
    return {k: v for k, v in (headers or {}).items() if k not in drop}


def copied_properties(message: AbstractIncomingMessage, headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "priority": message.priority,
        "correlation_id": message.correlation_id,
        "reply_to": message.reply_to,
        "message_id": message.message_id,
        "type": message.type,
        "headers": headers,
    }


def to_delivery(bus: RabbitBus, queue: str, message: AbstractIncomingMessage, count: int) -> Delivery:
    headers = dict(message.headers or {})
    return Delivery(
        event=CloudEvent.from_bytes(message.body),
        queue=queue,
        routing_key=message.routing_key or "",
        delivery_count=count,
        priority=message.priority or 0,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        headers=headers,
        death=policy.parse_death(headers),
        _bus=bus,
    )


async def on_job(
    bus: RabbitBus,
    spec: Queue,
    limit: int,
    handler: Handler,
    subscription: RabbitSubscription,
    message: AbstractIncomingMessage,
) -> None:
    """A durable queue's consumer callback: count the delivery, run the handler, settle."""
    with subscription.inflight.track():
        headers = message.headers or {}
        if policy.is_classic(spec):
            count = policy.classic_delivery_count(headers, message.redelivered)
            if message.redelivered and count <= limit:
                # a consumer died holding it: make the count durable before anyone tries again
                log.info("bus.redelivered", queue=spec.name, delivery_count=count)
                try:
                    await record_attempt(bus, spec, message, count)
                except SETTLE_ERRORS as exc:
                    log.warning("bus.settle_failed", queue=spec.name, error=policy.describe(exc))
                return
        else:
            count = policy.quorum_delivery_count(headers)
        await dispatch.handle(
            functools.partial(to_delivery, bus, spec.name, message, count),
            handler,
            queue=spec.name,
            limit=limit,
            delivery_count=count,
            settler=RabbitSettler(bus, spec, message),
        )
