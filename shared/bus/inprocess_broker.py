"""An in-memory AMQP broker for the embedded default: exchanges, bindings, queues, connections.

It models what the bus relies on, as RabbitMQ 3.10 does it:
- direct/topic/fanout routing plus the default exchange, and `x-consistent-hash` (the plugin: each
  queue's binding key is its weight; a routing key picks exactly one queue, `shared.bus.routing`);
- mandatory publishing: a publish that reaches no queue is refused (`BusRejected`);
- per-queue priorities (`x-max-priority`), single active consumers (`x-single-active-consumer`: the first
  consumer gets every message, the next takes over when it stops);
- `x-max-length` + `x-overflow: reject-publish` (ready messages only): a publish into a full queue is
  nacked and that queue does not take it (`BusRejected` when no queue took it);
- `x-message-ttl` with `x-dead-letter-exchange`/`-routing-key`: a ready message that waited that long is
  dead-lettered through normal routing with an `x-death` entry (reason "expired"), on a timer; a requeued
  message keeps its expiry, an unacked one never expires; a dead letter nobody takes is dropped;
- exclusive queues that vanish with their connection, and a broker-side `close_all_connections`
  (what `rabbitmqctl close_all_connections` does) so reconnect paths can be exercised.
Dead-lettering of rejected messages and delivery counting live in the bus, as they do with RabbitMQ.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Protocol

from shared.bus.base import BusError, BusRejected, QueueMismatch
from shared.bus.inprocess_queue import BrokerQueue, Envelope
from shared.bus.routing import route, weight_of
from shared.contracts.topology import ExchangeType, Queue, Topology, is_mandatory
from shared.logging import get_logger

__all__ = ["DEFAULT_EXCHANGE", "BrokerQueue", "Connection", "Envelope", "InProcessBroker"]

log = get_logger("shared.bus.inprocess")

DEFAULT_EXCHANGE = ""
REASON_EXPIRED = "expired"


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
            self.declare(queue)

    def declare(self, spec: Queue) -> BrokerQueue:
        """A durable queue with its arguments and bindings, as `queue.declare` then `queue.bind` would."""
        queue = self.declare_queue(spec.name, spec=spec)
        for exchange_name, key in spec.bindings:
            self.bind(spec.name, exchange_name, key)
        return queue

    def declare_exchange(self, name: str, exchange_type: ExchangeType) -> None:
        existing = self._exchanges.setdefault(name, exchange_type)
        if existing is not exchange_type:
            raise BusError(f"exchange {name!r} exists as {existing.value}, not {exchange_type.value}")

    def declare_queue(self, name: str, *, spec: Queue | None = None, owner: object | None = None) -> BrokerQueue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = BrokerQueue(
                name, spec=spec, owner=owner, on_expired=self._dead_letter_expired
            )
            return queue
        if queue.owner is not owner:
            raise BusError(f"queue {name!r} is exclusive to another connection")
        if spec is not None and queue.spec is not None and queue.spec.arguments() != spec.arguments():
            raise QueueMismatch(f"queue {name!r} exists with other arguments (PRECONDITION_FAILED)")
        return queue

    def bind(self, queue: str, exchange: str, binding_key: str) -> None:
        exchange_type = self._exchanges.get(exchange)
        if exchange_type is None or exchange == DEFAULT_EXCHANGE:
            raise BusError(f"cannot bind to exchange {exchange!r}")
        if queue not in self._queues:
            raise BusError(f"no queue {queue!r} to bind")
        if exchange_type is ExchangeType.CONSISTENT_HASH and weight_of(binding_key) < 1:
            raise BusError(f"a consistent-hash binding key is a weight above 0, not {binding_key!r}")
        bindings = self._bindings.setdefault(exchange, [])
        if (binding_key, queue) not in bindings:
            bindings.append((binding_key, queue))

    def unbind(self, queue: str, exchange: str, binding_key: str) -> None:
        bindings = self._bindings.get(exchange, [])
        if (binding_key, queue) in bindings:
            bindings.remove((binding_key, queue))

    def delete_queue(self, name: str) -> None:
        """The queue goes with its bindings and the messages ready in it."""
        queue = self._queues.pop(name, None)
        if queue is not None:
            queue.close()
        for exchange, bindings in self._bindings.items():
            self._bindings[exchange] = [b for b in bindings if b[1] != name]

    def queue(self, name: str) -> BrokerQueue:
        queue = self._queues.get(name)
        if queue is None:
            raise BusError(f"no queue {name!r}")
        return queue

    def has_queue(self, name: str) -> bool:
        return name in self._queues

    def has_exchange(self, name: str) -> bool:
        return name in self._exchanges

    # -- messages -------------------------------------------------------------------
    def publish(self, envelope: Envelope) -> None:
        """Route a copy to every matching queue that has room.

        Raises `BusRejected` when a mandatory publish matches no queue, or every queue it matches is full
        (reject-publish); `BusError` when only some were full: the others took it, so it is no clean refusal.
        """
        names = self._route(envelope.exchange, envelope.routing_key)
        if not names:
            if is_mandatory(envelope.exchange):
                raise BusRejected(f"unroutable: exchange {envelope.exchange!r}, routing key {envelope.routing_key!r}")
            return
        with_room = [name for name in names if not self._queues[name].is_full()]
        self._deliver(envelope, with_room)
        if len(with_room) < len(names):
            full = sorted(set(names) - set(with_room))
            refusal = BusRejected if not with_room else BusError
            raise refusal(f"queue full (reject-publish): {', '.join(full)}")

    def requeue(self, queue: str, envelope: Envelope) -> None:
        if queue in self._queues:
            self._queues[queue].put(envelope)

    def _deliver(self, envelope: Envelope, names: list[str]) -> None:
        seq = next(self._seq)
        for name in names:
            copy = envelope.copy()
            copy.seq = seq
            self._queues[name].put(copy)

    def _route(self, exchange: str, routing_key: str) -> list[str]:
        exchange_type = self._exchanges.get(exchange)
        if exchange_type is None:
            raise BusError(f"no exchange {exchange!r}")
        if exchange == DEFAULT_EXCHANGE:
            return [routing_key] if routing_key in self._queues else []
        # only bindings of queues that exist: a consistent hash spreads over the live ones
        bindings = [b for b in self._bindings.get(exchange, ()) if b[1] in self._queues]
        return route(exchange_type, bindings, routing_key)

    # -- what queues hand back --------------------------------------------------------
    def _dead_letter_expired(self, queue: BrokerQueue, envelopes: list[Envelope]) -> None:
        """x-message-ttl ran out: on to the queue's dead-letter exchange (dropped where it has none)."""
        arguments = queue.spec.arguments() if queue.spec is not None else {}
        exchange = arguments.get("x-dead-letter-exchange")
        for envelope in envelopes:
            if exchange is None:
                log.warning("bus.expired_message_dropped", queue=queue.name, reason="no dead-letter exchange")
                continue
            routing_key = arguments.get("x-dead-letter-routing-key", envelope.routing_key)
            headers = with_death(envelope.headers, REASON_EXPIRED, queue.name, envelope.exchange,
                                 envelope.routing_key)
            dead = Envelope(envelope.body, exchange, routing_key, envelope.priority, envelope.correlation_id,
                            envelope.reply_to, headers, envelope.delivery_count)
            self._dead_letter(dead, queue.name)

    def _dead_letter(self, dead: Envelope, source: str) -> None:
        try:
            names = self._route(dead.exchange, dead.routing_key)
        except BusError:
            names = []
        # RabbitMQ drops a dead letter that would cycle back into a queue it already expired from
        died_in = {entry.get("queue") for entry in dead.headers["x-death"]}
        names = [name for name in names if name not in died_in and not self._queues[name].is_full()]
        if not names:
            log.warning("bus.dead_letter_dropped", queue=source, exchange=dead.exchange, routing_key=dead.routing_key)
        self._deliver(dead, names)

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


def with_death(headers: dict[str, Any], reason: str, queue: str, exchange: str, routing_key: str) -> dict[str, Any]:
    """The headers plus RabbitMQ's `x-death`: one entry per (queue, reason), newest first, with a count."""
    deaths = [dict(d) for d in headers.get("x-death", ()) if isinstance(d, dict)]
    same = next((d for d in deaths if d.get("queue") == queue and d.get("reason") == reason), None)
    if same is not None:
        deaths.remove(same)
        same["count"] = int(same.get("count", 0)) + 1
    else:
        same = {"count": 1, "reason": reason, "queue": queue, "exchange": exchange, "routing-keys": [routing_key]}
    same["time"] = int(time.time())
    updated = {**headers, "x-death": [same, *deaths]}
    updated.setdefault("x-first-death-reason", reason)
    updated.setdefault("x-first-death-queue", queue)
    updated.setdefault("x-first-death-exchange", exchange)
    return updated
