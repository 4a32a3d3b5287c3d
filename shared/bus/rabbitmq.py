"""The production bus on RabbitMQ 3.10 through aio-pika's robust connection.

Everything is published persistent, `mandatory`, on a confirming channel with
`on_return_raises`, so `publish` returns only once the broker took the message and
raises `BusError` when no queue would get it. The topology and every private
queue, binding and consumer are declared on robust channels, which re-declare them
after a reconnect. Each consumer has its own channel (its own prefetch).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection
from aiormq.exceptions import (
    AMQPError,
    ChannelAccessRefused,
    ChannelLockedResource,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
)

from shared.bus import policy
from shared.bus.base import (
    Bus,
    BusError,
    Handler,
    QueueInUse,
    QueueMismatch,
    ReplyStream,
    Subscription,
    first_accepting,
)
from shared.bus.rabbitmq_consumers import EventSubscription, RabbitSubscription, on_job
from shared.bus.rabbitmq_publisher import Publisher, declare_queue
from shared.bus.replies import ReplyRouter
from shared.contracts.cloudevents import CloudEvent, Message
from shared.contracts.topology import INFERENCE_DELIVERY_LIMIT, Queue, Topology
from shared.logging import correlation_id as log_correlation_id
from shared.logging import get_logger

log = get_logger("shared.bus.rabbitmq")


class RabbitBus(Bus):
    def __init__(
        self,
        url: str,
        topology: Topology,
        *,
        classic_delivery_limit: int = INFERENCE_DELIVERY_LIMIT,
        drain_timeout: float = 30.0,
        publish_timeout: float = 10.0,
        reconnect_interval: float = 1.0,
        connection_name: str = "loraserve",
    ) -> None:
        self.url, self.topology = url, topology
        self.classic_delivery_limit = classic_delivery_limit
        self.drain_timeout, self.publish_timeout = drain_timeout, publish_timeout
        self.reconnect_interval, self.connection_name = reconnect_interval, connection_name
        self.publisher = Publisher(topology, publish_timeout)
        self._topology_queues = {q.name for q in (*topology.queues, *topology.dead_letter_queues)}
        self._connection: AbstractRobustConnection | None = None
        self._subscriptions: list[RabbitSubscription] = []
        self._replies = ReplyRouter()
        self._reply_queue: str | None = None
        self._reply_lock = asyncio.Lock()
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        if self._connection is not None:
            return
        try:
            self._connection = await aio_pika.connect_robust(
                self.url,
                reconnect_interval=self.reconnect_interval,
                timeout=self.publish_timeout,
                client_properties={"connection_name": self.connection_name},
            )
            await self.publisher.open(self._connection)
        except (TimeoutError, AMQPError, OSError, BusError) as exc:
            await self._forget_connection()
            raise BusError(f"RabbitMQ start failed: {policy.describe(exc)}") from exc
        self._connection.reconnect_callbacks.add(self._on_reconnected)
        self._connection.close_callbacks.add(self._on_connection_closed)
        log.info("bus.connected", exchanges=len(self.topology.exchanges), queues=len(self.topology.queues))

    async def _forget_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    def _on_reconnected(self, *_: Any) -> None:
        # aio-pika calls this once every robust channel was restored, not merely reconnected
        self.publisher.restored.set()
        log.info("bus.reconnected")

    def _on_connection_closed(self, _sender: Any, exc: BaseException | None = None) -> None:
        self.publisher.restored.clear()
        for subscription in self._subscriptions:
            if not subscription.restored:
                subscription.lost = True
        if not self._closing:
            log.warning(
                "bus.connection_lost",
                error=policy.describe(exc) if exc else None,
                reconnect_in=self.reconnect_interval,
            )

    async def ready(self) -> bool:
        connection = self._connection
        return (
            connection is not None
            and not self._closing
            and not connection.is_closed
            and self.publisher.restored.is_set()
        )

    async def close(self) -> None:
        if self._closing or self._connection is None:
            return
        self._closing = True
        subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            await subscription.stop()
        await asyncio.gather(*(s.drain(self.drain_timeout) for s in subscriptions))
        await self._disconnect(subscriptions)
        log.info("bus.closed")

    async def abort(self) -> None:
        """Drop the connection at once, as a crash would: running handlers are cancelled and the
        broker redelivers whatever was not acked to other consumers."""
        self._closing = True
        await self._disconnect(list(self._subscriptions))

    async def _disconnect(self, subscriptions: list[RabbitSubscription]) -> None:
        for subscription in subscriptions:
            subscription.cancel()
        self._replies.end_all()
        self.publisher.close()
        if self._connection is not None:
            await self._connection.close()

    # -- publishing -----------------------------------------------------------------
    async def publish(
        self,
        message: Message,
        *,
        source: str,
        correlation_id: str | None = None,
        priority: int | None = None,
        exchange: str | None = None,
    ) -> CloudEvent:
        event = message.to_event(source, correlation_id)
        target = message.EXCHANGE if exchange is None else exchange
        routes = self.topology.routes(target, message.routing_key(), message.affinity_key())
        await first_accepting(routes, functools.partial(
            self.publisher.publish_event, event=event, priority=priority, correlation_id=correlation_id))
        return event

    async def publish_event(self, event: CloudEvent, *, exchange: str, routing_key: str) -> None:
        await self.publisher.publish_event(exchange, routing_key, event, correlation_id=event.correlationid)

    async def request(
        self, message: Message, *, source: str, correlation_id: str | None = None, priority: int | None = None
    ) -> ReplyStream:
        reply_to = await self._ensure_reply_queue()
        request_id = uuid.uuid4().hex
        stream = self._replies.open(request_id)
        event = message.to_event(source, correlation_id)
        routes = self.topology.routes(message.EXCHANGE, message.routing_key(), message.affinity_key())
        try:
            await first_accepting(routes, functools.partial(
                self.publisher.publish_event, event=event, priority=priority, correlation_id=request_id,
                reply_to=reply_to))
        except BaseException:
            await stream.close()
            raise
        return stream

    async def send_reply(self, reply_to: str, correlation_id: str | None, event: CloudEvent) -> None:
        # replies go to an exclusive queue that dies with its requester: no need to persist them
        await self.publisher.publish_event(
            "", reply_to, event, correlation_id=correlation_id, persistent=False
        )

    # -- consuming ------------------------------------------------------------------
    async def consume(self, queue: str | Queue, handler: Handler, *, prefetch: int = 8,
                      exclusive: bool = False) -> Subscription:
        spec = queue if isinstance(queue, Queue) else self._spec(queue)
        restored = spec.name in self._topology_queues
        limit = policy.delivery_limit(spec, self.classic_delivery_limit)
        channel = await self._new_channel()
        await channel.set_qos(prefetch_count=max(1, prefetch))
        try:
            declared = await declare_queue(channel, spec, robust=restored)
        except ChannelPreconditionFailed as exc:
            await channel.close()
            raise QueueMismatch(f"queue {spec.name!r} exists with other arguments: {policy.describe(exc)}") from exc
        subscription = RabbitSubscription(self, channel, declared, restored=restored)
        callback = functools.partial(on_job, self, spec, limit, handler, subscription)
        try:
            subscription.consumer_tag = await declared.consume(callback, exclusive=exclusive, robust=restored)
        except (ChannelAccessRefused, ChannelLockedResource) as exc:
            await channel.close()  # the broker closed it; its robust self reopened it
            raise QueueInUse(f"queue {spec.name!r} has a consumer already") from exc
        self._subscriptions.append(subscription)
        return subscription

    async def subscribe(self, exchange: str, binding_keys: list[str], handler: Handler) -> Subscription:
        if exchange not in self.publisher.exchanges or exchange == "":
            raise BusError(f"exchange {exchange!r} is not in the topology")
        channel = await self._new_channel()
        declared = await channel.declare_queue(
            f"loraserve.sub.{uuid.uuid4().hex}", exclusive=True, auto_delete=True
        )
        for key in binding_keys or [""]:
            await declared.bind(exchange, key)
        subscription = EventSubscription(self, channel, declared, handler)
        subscription.consumer_tag = await declared.consume(subscription.on_message, no_ack=True)
        self._subscriptions.append(subscription)
        return subscription

    async def consumers(self, queue: str) -> int | None:
        async with self._one_off_channel() as channel:
            try:
                declared = await channel.declare_queue(queue, passive=True, robust=False)
            except ChannelNotFoundEntity:
                return None
            return declared.declaration_result.consumer_count or 0

    async def delete_if_empty(self, queue: str) -> bool:
        async with self._one_off_channel() as channel:
            try:
                await channel.queue_delete(queue, if_empty=True, if_unused=True)
            except ChannelPreconditionFailed:
                return False
            except ChannelNotFoundEntity:
                pass
            return True

    async def bind(self, queue: Queue) -> None:
        await self._rebind(queue, bind=True)

    async def unbind(self, queue: Queue) -> None:
        await self._rebind(queue, bind=False)

    async def _rebind(self, queue: Queue, *, bind: bool) -> None:
        """On a plain channel of its own: the consumer's robust one restores its bindings after a reconnect."""
        async with self._one_off_channel() as channel:
            try:
                declared = await channel.declare_queue(queue.name, passive=True, robust=False)
            except ChannelNotFoundEntity:
                return
            for exchange, key in queue.bindings:
                await (declared.bind(exchange, key) if bind else declared.unbind(exchange, key))

    async def queue_depth(self, queue: str) -> int:
        spec = self._spec(queue)  # a passive declare of a missing queue would close the channel
        async with self._one_off_channel() as channel:
            try:
                declared = await channel.declare_queue(spec.name, passive=True, robust=False)
            except ChannelNotFoundEntity as exc:
                raise BusError(f"no queue {queue!r}") from exc
            return declared.declaration_result.message_count or 0

    @contextlib.asynccontextmanager
    async def _one_off_channel(self) -> AsyncIterator[AbstractRobustChannel]:
        """A channel for one question to the broker; a 404 or 406 answer closes it, so it is nobody else's."""
        channel = await self._new_channel()
        try:
            yield channel
        finally:
            if not channel.is_closed:
                await channel.close()

    def _spec(self, queue: str) -> Queue:
        try:
            return self.topology.queue(queue)
        except KeyError:
            raise BusError(f"queue {queue!r} is not in the topology") from None

    async def _new_channel(self) -> AbstractRobustChannel:
        if self._connection is None or self._closing:
            raise BusError("the bus is not running")
        return await self._connection.channel(publisher_confirms=False)

    def _forget(self, subscription: RabbitSubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    async def _ensure_reply_queue(self) -> str:
        async with self._reply_lock:
            if self._reply_queue is None:
                channel = await self._new_channel()
                name = f"loraserve.replies.{uuid.uuid4().hex}"
                declared = await channel.declare_queue(name, exclusive=True, auto_delete=True)
                subscription = RabbitSubscription(self, channel, declared)
                subscription.consumer_tag = await declared.consume(self._on_reply, no_ack=True)
                self._subscriptions.append(subscription)
                self._reply_queue = name
        return self._reply_queue

    # -- deliveries -----------------------------------------------------------------
    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        try:
            event = CloudEvent.from_bytes(message.body)
        except ValueError as exc:
            log.warning("bus.malformed_reply", error=policy.describe(exc))
            return
        if not self._replies.dispatch(message.correlation_id, event):
            token = log_correlation_id.set(event.correlationid)
            log.debug("bus.reply_without_request", reply_correlation_id=message.correlation_id)
            log_correlation_id.reset(token)
