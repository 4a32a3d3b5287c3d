"""The embedded default bus: the RabbitMQ semantics of `shared.bus.base`, inside one process.

Each `InProcessBus` is one client connection to an `InProcessBroker` (its own unless
one is passed in, so tests can put several buses on one broker). Like the RabbitMQ
bus it acks on handler return, counts deliveries, dead-letters into `<queue>.dlq`
with a death record, orders priority queues, requeues what a lost connection left
unacked, and reconnects by itself when the broker drops it.

Adapter affinity, as the RabbitMQ bus does it: a publish tries `Topology.routes` in order, moving on only
when the broker refused it (`BusRejected`). `consume` takes a worker's own queue spec and declares it durable,
owned by no connection (the broker's TTL then moves on what a crashed worker held); its consumer is not
restored after a reconnect (it turns `lost`, as on RabbitMQ). Its retries and dead letters go to its `home`. The broker does TTL and overflow
(`shared.bus.inprocess_broker`). Unlike RabbitMQ's classic queues, a message expiring into the
shared queue keeps its delivery count (RabbitMQ's redelivered flag does not travel with it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import uuid

from shared.bus import dispatch, policy
from shared.bus.base import Bus, BusError, Handler, QueueInUse, ReplyStream, Subscription, first_accepting
from shared.bus.inflight import InFlight
from shared.bus.inprocess_broker import DEFAULT_EXCHANGE, Envelope, InProcessBroker
from shared.bus.inprocess_consumers import Consumer, Settler, to_delivery
from shared.bus.replies import ReplyRouter
from shared.contracts.cloudevents import MAX_MESSAGE_BYTES, CloudEvent, Message
from shared.contracts.topology import INFERENCE_DELIVERY_LIMIT, Queue, Topology
from shared.logging import get_logger

log = get_logger("shared.bus.inprocess")


class InProcessBus(Bus):
    def __init__(
        self,
        topology: Topology,
        *,
        broker: InProcessBroker | None = None,
        classic_delivery_limit: int = INFERENCE_DELIVERY_LIMIT,
        drain_timeout: float = 30.0,
        publish_timeout: float = 10.0,
        reconnect_delay: float = 0.05,
    ) -> None:
        self.topology = topology
        self.broker = broker or InProcessBroker()
        self.classic_delivery_limit = classic_delivery_limit
        self.drain_timeout = drain_timeout
        self.publish_timeout = publish_timeout
        self.reconnect_delay = reconnect_delay
        self._connected = asyncio.Event()
        self._started = self._closing = False
        self._tags = itertools.count(1)
        self._unacked: dict[int, tuple[str, Envelope]] = {}
        self._consumers: list[Consumer] = []
        self._private: dict[str, list[tuple[str, str]]] = {}  # exclusive queue -> its bindings
        self._own: dict[str, Queue] = {}  # durable queues this bus declared from a consumer's spec
        self._replies = ReplyRouter()
        self._reply_queue: str | None = None
        self._inflight = InFlight()
        self._reconnecting: asyncio.Task | None = None

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        self.broker.declare_topology(self.topology)
        self.broker.attach(self)
        self._started = True
        self._connected.set()

    async def ready(self) -> bool:
        return self._started and not self._closing and self._connected.is_set()

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        stopped = [consumer.stop() for consumer in self._consumers]
        if not await self._inflight.drain(self.drain_timeout):
            log.warning("bus.drain_timed_out", running=self._inflight.running)
        await self._disconnect(stopped)

    async def abort(self) -> None:
        """Drop the connection at once, as a crash would: running handlers are cancelled, unacked
        messages go back to their queues for other consumers."""
        self._closing = True
        await self._disconnect([])

    async def _disconnect(self, stopped: list[asyncio.Task | None]) -> None:
        stopped += self._drop_connection()
        self._inflight.cancel_all()
        self._replies.end_all()
        self.broker.detach(self)
        stopped.append(self._reconnecting)
        for task in stopped:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(task for task in stopped if task is not None), return_exceptions=True)

    def connection_lost(self) -> None:
        self._drop_connection()
        if not self._closing:
            log.warning("bus.connection_lost", reconnect_in=self.reconnect_delay)
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    def _drop_connection(self) -> list[asyncio.Task | None]:
        """What a lost connection means: consumers stop, every unacked message goes back, counted."""
        self._connected.clear()
        stopped = [consumer.stop() for consumer in self._consumers]
        for consumer in [c for c in self._consumers if c.queue in self._own]:
            consumer.lost = True  # an own queue's consumer is not restored (its owner takes what it wants again)
            self._consumers.remove(consumer)
            self._own.pop(consumer.queue, None)
        for queue, envelope in self._unacked.values():
            envelope.delivery_count += 1
            self.broker.requeue(queue, envelope)
        self._unacked.clear()
        return stopped

    async def _reconnect(self) -> None:
        await asyncio.sleep(self.reconnect_delay)
        self.broker.attach(self)
        for name in self._private:
            self._declare_private(name)
        for spec in self._own.values():  # queues declared without a consumer yet
            self.broker.declare(spec)
        for consumer in self._consumers:
            try:
                consumer.start()
            except BusError as exc:
                log.error("bus.consumer_not_restarted", queue=consumer.queue, error=str(exc))
        self._connected.set()
        log.info("bus.reconnected")

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
        envelope = Envelope(event.to_bytes(), target, message.routing_key(), priority or 0, correlation_id)
        await self._send(envelope, message.affinity_key())
        return event

    async def publish_event(self, event: CloudEvent, *, exchange: str, routing_key: str) -> None:
        await self._send(Envelope(event.to_bytes(), exchange, routing_key, 0, event.correlationid), None)

    async def request(
        self, message: Message, *, source: str, correlation_id: str | None = None, priority: int | None = None
    ) -> ReplyStream:
        reply_to = await self._ensure_reply_queue()
        request_id = uuid.uuid4().hex
        stream = self._replies.open(request_id)
        event = message.to_event(source, correlation_id)
        envelope = Envelope(
            event.to_bytes(), message.EXCHANGE, message.routing_key(), priority or 0, request_id, reply_to
        )
        try:
            await self._send(envelope, message.affinity_key())
        except BaseException:
            await stream.close()
            raise
        return stream

    async def send_reply(self, reply_to: str, correlation_id: str | None, event: CloudEvent) -> None:
        await self._send(Envelope(event.to_bytes(), DEFAULT_EXCHANGE, reply_to, 0, correlation_id), None)

    async def _send(self, envelope: Envelope, affinity_key: str | None) -> None:
        """Publish along the topology's routes for this message, in order, until one is not refused."""
        if len(envelope.body) > MAX_MESSAGE_BYTES:
            raise BusError(f"message of {len(envelope.body)} bytes exceeds {MAX_MESSAGE_BYTES}")
        await self._wait_connected()
        routes = self.topology.routes(envelope.exchange, envelope.routing_key, affinity_key)

        async def send(exchange: str, routing_key: str) -> None:
            self.broker.publish(dataclasses.replace(envelope, exchange=exchange, routing_key=routing_key))

        await first_accepting(routes, send)
        await asyncio.sleep(0)  # a publisher in a loop must not starve the consumers

    async def _wait_connected(self) -> None:
        if self._closing or not self._started:
            raise BusError("the bus is not running")
        try:
            await asyncio.wait_for(self._connected.wait(), self.publish_timeout)
        except TimeoutError:
            raise BusError(f"not connected after {self.publish_timeout}s") from None

    # -- consuming ------------------------------------------------------------------
    async def consume(self, queue: str | Queue, handler: Handler, *, prefetch: int = 8,
                      exclusive: bool = False) -> Subscription:
        spec = self._declare_own(queue) if isinstance(queue, Queue) else self._spec(queue)
        if exclusive and self.broker.queue(spec.name).consumer_count:
            raise QueueInUse(f"queue {spec.name!r} has a consumer already")
        limit = policy.delivery_limit(spec, self.classic_delivery_limit)
        on_envelope = functools.partial(self._on_job, spec, limit, handler)
        return self._add_consumer(Consumer(self, spec.name, on_envelope, prefetch, acked=True))

    async def subscribe(self, exchange: str, binding_keys: list[str], handler: Handler) -> Subscription:
        name = f"loraserve.sub.{uuid.uuid4().hex}"
        self._private[name] = [(exchange, key) for key in binding_keys or [""]]
        try:
            self._declare_private(name)
        except BusError:
            self._private.pop(name)
            self.broker.delete_queue(name)
            raise
        on_envelope = functools.partial(self._on_event, handler, name)
        return self._add_consumer(Consumer(self, name, on_envelope, 1, acked=False, private=True))

    async def queue_depth(self, queue: str) -> int:
        return len(self.broker.queue(queue))

    async def consumers(self, queue: str) -> int | None:
        return self.broker.queue(queue).consumer_count if self.broker.has_queue(queue) else None

    async def delete_if_empty(self, queue: str) -> bool:
        if not self.broker.has_queue(queue):
            return True
        source = self.broker.queue(queue)
        if len(source) or source.consumer_count:
            return False
        self.broker.delete_queue(queue)
        self._own.pop(queue, None)
        return True

    async def bind(self, queue: Queue) -> None:
        if self.broker.has_queue(queue.name):
            for exchange, key in queue.bindings:
                self.broker.bind(queue.name, exchange, key)
        if queue.name in self._own:
            self._own[queue.name] = queue

    async def unbind(self, queue: Queue) -> None:
        for exchange, key in queue.bindings:
            self.broker.unbind(queue.name, exchange, key)
        if queue.name in self._own:  # a reconnect declares the queue again, without its bindings
            self._own[queue.name] = dataclasses.replace(queue, bindings=())

    def _spec(self, queue: str) -> Queue:
        if queue in self._own:
            return self._own[queue]
        try:
            return self.topology.queue(queue)
        except KeyError:
            raise BusError(f"queue {queue!r} is not in the topology") from None

    def _declare_own(self, spec: Queue) -> Queue:
        """A consumer's own durable queue: declared with its arguments and bindings, owned by no connection."""
        if self._closing or not self._started:
            raise BusError("the bus is not running")
        try:
            if self.topology.queue(spec.name) == spec:
                return spec
        except KeyError:
            pass
        self.broker.declare(spec)
        self._own[spec.name] = spec
        return spec

    def _add_consumer(self, consumer: Consumer) -> Consumer:
        if self._closing or not self._started:
            raise BusError("the bus is not running")
        self._consumers.append(consumer)
        if self._connected.is_set():
            consumer.start()
        return consumer

    def _forget_consumer(self, consumer: Consumer) -> None:
        if consumer in self._consumers:
            self._consumers.remove(consumer)
        if consumer.queue in self._own and all(c.queue != consumer.queue for c in self._consumers):
            del self._own[consumer.queue]  # not declared again on a reconnect
        if consumer.private:
            self._private.pop(consumer.queue, None)
            self.broker.delete_queue(consumer.queue)

    def _declare_private(self, name: str) -> None:
        self.broker.declare_queue(name, owner=self)
        for exchange, key in self._private[name]:
            self.broker.bind(name, exchange, key)

    async def _ensure_reply_queue(self) -> str:
        if self._reply_queue is None:
            name = f"loraserve.replies.{uuid.uuid4().hex}"
            self._private[name] = []
            self._declare_private(name)
            self._add_consumer(Consumer(self, name, self._on_reply, 1, acked=False, private=True))
            self._reply_queue = name
        return self._reply_queue

    # -- deliveries -----------------------------------------------------------------
    def _hold(self, queue: str, envelope: Envelope) -> int:
        tag = next(self._tags)
        self._unacked[tag] = (queue, envelope)
        return tag

    def _release(self, tag: int) -> bool:
        return self._unacked.pop(tag, None) is not None

    async def _on_job(self, spec: Queue, limit: int, handler: Handler, tag: int, envelope: Envelope) -> None:
        with self._inflight.track():
            await dispatch.handle(
                functools.partial(to_delivery, self, spec.name, envelope),
                handler,
                queue=spec.name,
                limit=limit,
                delivery_count=envelope.delivery_count,
                settler=Settler(self, spec, tag, envelope),
            )

    async def _on_event(self, handler: Handler, queue: str, _tag: int, envelope: Envelope) -> None:
        with self._inflight.track():
            try:
                await handler(to_delivery(self, queue, envelope))
            except Exception as exc:  # noqa: BLE001 -- at-most-once: the event is gone either way
                log.warning("bus.subscriber_failed", queue=queue, error=policy.describe(exc))

    async def _on_reply(self, _tag: int, envelope: Envelope) -> None:
        try:
            event = CloudEvent.from_bytes(envelope.body)
        except ValueError as exc:
            log.warning("bus.malformed_reply", error=policy.describe(exc))
            return
        if not self._replies.dispatch(envelope.correlation_id, event):
            log.debug("bus.reply_without_request", correlation_id=envelope.correlation_id)
