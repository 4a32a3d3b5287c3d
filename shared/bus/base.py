"""The bus interface every service talks through.

Two implementations: `shared.bus.rabbitmq.RabbitBus` (aio-pika) and
`shared.bus.inprocess.InProcessBus` (the embedded default). Both build the same
topology from `shared.contracts.topology` and give the same semantics:

- `publish` returns only once the broker confirmed the message (persistent). A job with an
  `affinity_key` goes to its model's consistent-hash exchange first (the worker that likely
  holds its adapter), and to the shared queue when that route refuses it (`Topology.routes`).
- a consumer's handler gets a `Delivery`; returning normally acks it, raising
  `Requeue` requeues it, raising `DeadLetter` (or any other exception once the
  queue's delivery limit is reached) dead-letters it with the reason kept.
  Any other exception requeues; the delivery count bounds that: quorum queues by
  `x-delivery-limit`, classic queues by the bus counting redeliveries itself.
- `request` publishes a job with a private reply address and yields the replies
  (in order) that the consumer sends with `Delivery.reply`; `send_reply` raises
  `BusError` once the requester is gone (its reply address no longer exists).
- `subscribe` binds a private, exclusive, auto-deleted queue to an exchange
  (fanout cancels, SSE event fan-out, per-instance read models).
- `close` stops consuming, waits for in-flight handlers, then disconnects.
"""
from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from shared.contracts.cloudevents import CloudEvent, Message
from shared.contracts.topology import Queue


class Requeue(Exception):
    """Raised by a handler: put the message back for another try."""


class DeadLetter(Exception):
    """Raised by a handler: the message can never succeed; dead-letter it now."""


class BusError(Exception):
    """Publishing failed: unroutable, nacked by the broker, or disconnected."""


class QueueInUse(BusError):
    """An exclusive consume of a queue that already has a consumer (RabbitMQ: ACCESS_REFUSED)."""


class QueueMismatch(BusError):
    """A queue exists with other arguments than the spec declares (RabbitMQ: PRECONDITION_FAILED)."""


class BusRejected(BusError):
    """The broker surely did not take the message: no queue was bound, or the queue was full (reject-publish).
    Unlike a timeout, trying another route cannot duplicate it."""


@dataclass(frozen=True)
class DeathRecord:
    """Why a message reached a dead-letter queue (read from a `<queue>.dlq` delivery).

    `reason`: "rejected" (a handler raised `DeadLetter`), "delivery_limit" (the
    queue's delivery limit was used up), "malformed" (the body was no CloudEvent),
    or a broker reason such as "expired". `count` is how many times the message
    was delivered from `queue`; `error` the last handler error, when known.
    """

    reason: str
    queue: str
    count: int
    error: str | None = None
    routing_key: str | None = None  # where the message was first published


@dataclass
class Delivery:
    event: CloudEvent
    queue: str
    routing_key: str
    delivery_count: int  # 1 on first delivery
    priority: int = 0
    correlation_id: str | None = None
    reply_to: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    death: DeathRecord | None = None  # set on deliveries from a dead-letter queue
    _bus: Bus | None = None

    async def reply(self, message: Message, *, source: str) -> None:
        """Send one message on this delivery's reply stream (no-op when nobody asked)."""
        if self.reply_to and self._bus is not None:
            await self._bus.send_reply(self.reply_to, self.correlation_id, message.to_event(source, self.event.correlationid))


Handler = Callable[[Delivery], Awaitable[None]]


async def first_accepting(routes: list[tuple[str, str]], send: Callable[..., Awaitable[None]]) -> None:
    """`send(exchange, routing_key)` along `routes` until one is not refused (`Topology.routes` orders them)."""
    for exchange, routing_key in routes[:-1]:
        try:
            await send(exchange, routing_key)
            return
        except BusRejected:
            continue
    exchange, routing_key = routes[-1]
    await send(exchange, routing_key)


class ReplyStream(abc.ABC):
    """The replies to one `request`, in the order the consumer sent them."""

    correlation_id: str

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[CloudEvent]: ...

    @abc.abstractmethod
    async def next(self, timeout: float | None = None) -> CloudEvent:
        """The next reply; raises `asyncio.TimeoutError` after `timeout` seconds."""

    @abc.abstractmethod
    async def close(self) -> None: ...


class Subscription(abc.ABC):
    lost = False  # a consumer's own queue's subscription ends with its connection: a reconnect does not restore it

    @abc.abstractmethod
    async def close(self) -> None: ...


class Bus(abc.ABC):
    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and declare the whole topology (idempotent)."""

    @abc.abstractmethod
    async def publish(self, message: Message, *, source: str, correlation_id: str | None = None,
                      priority: int | None = None, exchange: str | None = None) -> CloudEvent:
        """Publish `message` to `exchange` (default `message.EXCHANGE`) under `message.routing_key()`.

        Returns the CloudEvent that went out once the broker confirmed it. Raises
        `BusError` when the message could not be routed to any queue.
        """

    @abc.abstractmethod
    async def publish_event(self, event: CloudEvent, *, exchange: str, routing_key: str) -> None:
        """Publish a CloudEvent prepared earlier (an outbox entry) exactly as it is: a re-publish keeps
        its `id`, so consumers recognise it. Same confirms and errors as `publish`."""

    @abc.abstractmethod
    async def consume(self, queue: str | Queue, handler: Handler, *, prefetch: int = 8,
                      exclusive: bool = False) -> Subscription:
        """Start consuming a durable queue: one of the topology's by name, or a consumer's own (a worker's
        affinity seat) by its spec, which is declared with its bindings first. A topology queue's subscription
        is restored after a reconnect; an own queue's is not (it turns `lost`: the owner decides what to take
        again, so a restore can never be refused and hold up the whole connection). `exclusive`: be its only
        consumer, or raise `QueueInUse` (two workers never share a seat)."""

    @abc.abstractmethod
    async def consumers(self, queue: str) -> int | None:
        """How many consumers a durable queue has now; None when it does not exist."""

    @abc.abstractmethod
    async def bind(self, queue: Queue) -> None:
        """Bind an existing queue of a consumer's own as its spec says (again: binding is idempotent)."""

    @abc.abstractmethod
    async def delete_if_empty(self, queue: str) -> bool:
        """Delete a consumer's own queue if it holds no message and has no consumer; True when it is gone."""

    @abc.abstractmethod
    async def unbind(self, queue: Queue) -> None:
        """Remove a consumer's own queue's bindings (it stops receiving; what it holds stays and is consumed)."""

    @abc.abstractmethod
    async def subscribe(self, exchange: str, binding_keys: list[str], handler: Handler) -> Subscription:
        """Consume from a private exclusive queue bound to `exchange` (at-most-once, auto-ack)."""

    @abc.abstractmethod
    async def request(self, message: Message, *, source: str, correlation_id: str | None = None,
                      priority: int | None = None) -> ReplyStream:
        """Publish a job whose consumer replies with a stream of messages."""

    @abc.abstractmethod
    async def send_reply(self, reply_to: str, correlation_id: str | None, event: CloudEvent) -> None: ...

    @abc.abstractmethod
    async def ready(self) -> bool:
        """True while connected (used by /readyz)."""

    @abc.abstractmethod
    async def queue_depth(self, queue: str) -> int:
        """Messages ready in a durable queue (metrics, tests)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop consuming, wait for in-flight handlers, then disconnect."""
