"""An in-memory AMQP broker for the embedded default: exchanges, bindings, priority queues, connections.

It models only what the bus relies on: direct/topic/fanout routing plus the default
exchange, mandatory publishing, per-queue priorities (`x-max-priority`), single active consumers
(`x-single-active-consumer`: the first consumer gets every message, the next takes over when it stops),
exclusive queues that vanish with their connection, and a broker-side `close_all_connections`
(what `rabbitmqctl close_all_connections` does) so reconnect paths can be exercised.
Dead-lettering and delivery counting live in the bus, as they do with RabbitMQ.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.bus.base import BusError
from shared.bus.routing import route
from shared.contracts.topology import ExchangeType, Topology, is_mandatory

DEFAULT_EXCHANGE = ""


@dataclass
class Envelope:
    """One message as it sits in a queue (a copy per queue it was routed to)."""

    body: bytes
    exchange: str
    routing_key: str
    priority: int = 0
    correlation_id: str | None = None
    reply_to: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    delivery_count: int = 1  # the count the next delivery will carry
    seq: int = 0  # arrival order; a requeued message keeps its place

    def copy(self) -> Envelope:
        return Envelope(
            self.body,
            self.exchange,
            self.routing_key,
            self.priority,
            self.correlation_id,
            self.reply_to,
            dict(self.headers),
            self.delivery_count,
            self.seq,
        )


class BrokerQueue:
    """Ready messages, highest priority first, then oldest first."""

    def __init__(self, name: str, *, max_priority: int | None = None, owner: object | None = None,
                 single_active: bool = False) -> None:
        self.name = name
        self.max_priority = max_priority
        self.owner = owner  # the connection an exclusive queue belongs to
        self.single_active = single_active  # x-single-active-consumer: only the first in line gets messages
        self._heap: list[tuple[int, int, Envelope]] = []
        self._waiters: deque[asyncio.Future] = deque()
        self._line: list[object] = []  # single active consumer: consumers in the order they came
        self._turn_waiters: list[asyncio.Future] = []

    def __len__(self) -> int:
        return len(self._heap)

    def put(self, envelope: Envelope) -> None:
        priority = min(max(envelope.priority, 0), self.max_priority) if self.max_priority else 0
        heapq.heappush(self._heap, (-priority, envelope.seq, envelope))
        self._wake_one()

    async def get(self) -> Envelope:
        while not self._heap:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # a wake-up this waiter can no longer use goes to the next one
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return heapq.heappop(self._heap)[2]

    async def wait_turn(self, consumer: object) -> None:
        """Single active consumer: return once `consumer` is first in line (at once on other queues)."""
        if not self.single_active:
            return
        if consumer not in self._line:
            self._line.append(consumer)
        while self._line[0] is not consumer:
            waiter = asyncio.get_running_loop().create_future()
            self._turn_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._turn_waiters:
                    self._turn_waiters.remove(waiter)

    def leave(self, consumer: object) -> None:
        """`consumer` stopped: when it was the active one, the next in line takes over."""
        if consumer not in self._line:
            return
        was_active = self._line[0] is consumer
        self._line.remove(consumer)
        if was_active:
            for waiter in self._turn_waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class Connection(Protocol):
    def connection_lost(self) -> None:
        """The broker dropped this connection: requeue what is unacked, then reconnect."""


class InProcessBroker:
    def __init__(self) -> None:
        self._exchanges: dict[str, ExchangeType] = {DEFAULT_EXCHANGE: ExchangeType.DIRECT}
        self._bindings: dict[str, list[tuple[str, str]]] = {}  # exchange -> [(binding key, queue)]
        self._queues: dict[str, BrokerQueue] = {}
        self._seq = itertools.count()
        self._connections: list[Connection] = []

    # -- declarations ---------------------------------------------------------------
    def declare_topology(self, topology: Topology) -> None:
        for exchange in topology.exchanges:
            self.declare_exchange(exchange.name, exchange.type)
        for queue in (*topology.queues, *topology.dead_letter_queues):
            self.declare_queue(queue.name, max_priority=queue.max_priority,
                               single_active=queue.single_active_consumer)
            for exchange_name, key in queue.bindings:
                self.bind(queue.name, exchange_name, key)

    def declare_exchange(self, name: str, exchange_type: ExchangeType) -> None:
        existing = self._exchanges.setdefault(name, exchange_type)
        if existing is not exchange_type:
            raise BusError(f"exchange {name!r} exists as {existing.value}, not {exchange_type.value}")

    def declare_queue(
        self, name: str, *, max_priority: int | None = None, owner: object | None = None,
        single_active: bool = False,
    ) -> BrokerQueue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = BrokerQueue(name, max_priority=max_priority, owner=owner,
                                                     single_active=single_active)
        elif queue.owner is not owner:
            raise BusError(f"queue {name!r} is exclusive to another connection")
        return queue

    def bind(self, queue: str, exchange: str, binding_key: str) -> None:
        if exchange not in self._exchanges or exchange == DEFAULT_EXCHANGE:
            raise BusError(f"cannot bind to exchange {exchange!r}")
        bindings = self._bindings.setdefault(exchange, [])
        if (binding_key, queue) not in bindings:
            bindings.append((binding_key, queue))

    def delete_queue(self, name: str) -> None:
        self._queues.pop(name, None)
        for exchange, bindings in self._bindings.items():
            self._bindings[exchange] = [b for b in bindings if b[1] != name]

    def queue(self, name: str) -> BrokerQueue:
        queue = self._queues.get(name)
        if queue is None:
            raise BusError(f"no queue {name!r}")
        return queue

    def has_exchange(self, name: str) -> bool:
        return name in self._exchanges

    # -- messages -------------------------------------------------------------------
    def publish(self, envelope: Envelope) -> None:
        """Route a copy to every matching queue; raise `BusError` when none matches a mandatory publish."""
        names = self._route(envelope.exchange, envelope.routing_key)
        if not names and is_mandatory(envelope.exchange):
            raise BusError(
                f"unroutable: exchange {envelope.exchange!r}, routing key {envelope.routing_key!r}"
            )
        seq = next(self._seq)
        for name in names:
            copy = envelope.copy()
            copy.seq = seq
            self._queues[name].put(copy)

    def requeue(self, queue: str, envelope: Envelope) -> None:
        if queue in self._queues:
            self._queues[queue].put(envelope)

    def _route(self, exchange: str, routing_key: str) -> list[str]:
        exchange_type = self._exchanges.get(exchange)
        if exchange_type is None:
            raise BusError(f"no exchange {exchange!r}")
        if exchange == DEFAULT_EXCHANGE:
            return [routing_key] if routing_key in self._queues else []
        names = route(exchange_type, self._bindings.get(exchange, ()), routing_key)
        return [name for name in names if name in self._queues]

    # -- connections ----------------------------------------------------------------
    def attach(self, connection: Connection) -> None:
        if connection not in self._connections:
            self._connections.append(connection)

    def detach(self, connection: Connection) -> None:
        if connection in self._connections:
            self._connections.remove(connection)
        for queue in [q for q in self._queues.values() if q.owner is connection]:
            self.delete_queue(queue.name)

    def close_all_connections(self) -> None:
        for connection in list(self._connections):
            connection.connection_lost()
            self.detach(connection)
