"""Confirmed, mandatory, persistent publishing on one robust channel, and the topology it declares."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
from aio_pika.abc import AbstractQueue, AbstractRobustChannel, AbstractRobustConnection
from aiormq.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError, PublishError

from shared.bus import policy
from shared.bus.base import BusError, BusRejected
from shared.contracts.cloudevents import CONTENT_TYPE, MAX_MESSAGE_BYTES, CloudEvent
from shared.contracts.topology import Exchange, ExchangeType, Queue, Topology, is_mandatory
from shared.logging import get_logger

log = get_logger("shared.bus.rabbitmq")

_RETRYABLE = (ChannelInvalidStateError, ConnectionError, AMQPError)


async def declare_topology(channel: AbstractRobustChannel, topology: Topology) -> None:
    """Declared on a robust channel, so aio-pika declares it all again after a reconnect."""
    for exchange in topology.exchanges:
        await declare_exchange(channel, exchange)
    for spec in (*topology.queues, *topology.dead_letter_queues):
        queue = await declare_queue(channel, spec)
        for exchange_name, key in spec.retired_bindings:
            await queue.unbind(exchange_name, key)


async def declare_exchange(channel: AbstractRobustChannel, exchange: Exchange) -> None:
    try:
        await channel.declare_exchange(exchange.name, exchange.type.value, durable=True)
    except AMQPError as exc:
        if exchange.type is ExchangeType.CONSISTENT_HASH:
            raise BusError(f"cannot declare {exchange.name!r}: enable the broker's rabbitmq_consistent_hash_exchange"
                           f" plugin (deploy/ensure-rabbitmq.sh does): {policy.describe(exc)}") from exc
        raise


async def declare_queue(channel: AbstractRobustChannel, spec: Queue, *, robust: bool = True) -> AbstractQueue:
    """A durable queue with its arguments and bindings (`robust`: declared again after a reconnect)."""
    queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments(), robust=robust)
    for exchange_name, key in spec.bindings:
        await queue.bind(exchange_name, key)
    return queue


class Publisher:
    def __init__(self, topology: Topology, timeout: float) -> None:
        self.topology, self.timeout = topology, timeout
        self.exchanges = {"", *(exchange.name for exchange in topology.exchanges)}
        self.channel: AbstractRobustChannel | None = None
        # set while connected with every channel, private queue and consumer restored
        self.restored = asyncio.Event()

    async def open(self, connection: AbstractRobustConnection) -> None:
        self.channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await declare_topology(self.channel, self.topology)
        self.restored.set()

    def close(self) -> None:
        self.channel = None

    async def publish_event(
        self,
        exchange: str,
        routing_key: str,
        event: CloudEvent,
        *,
        persistent: bool = True,
        **properties: Any,
    ) -> None:
        body = event.to_bytes()
        await self.publish(
            exchange,
            routing_key,
            body,
            persistent=persistent,
            message_id=event.id,
            type=event.type,
            **properties,
        )

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, *, persistent: bool = True, **properties: Any
    ) -> None:
        if exchange not in self.exchanges:
            # publishing to a missing exchange would close the channel; refuse it here instead
            raise BusError(f"exchange {exchange!r} is not in the topology")
        if len(body) > MAX_MESSAGE_BYTES:
            raise BusError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE_BYTES}")
        mode = aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
        message = aio_pika.Message(body, content_type=CONTENT_TYPE, delivery_mode=mode, **properties)
        loop = asyncio.get_running_loop()
        deadline, backoff = loop.time() + self.timeout, 0.1
        while True:
            try:
                await self._publish_once(exchange, routing_key, message)
                return
            except PublishError as exc:
                raise BusRejected(f"unroutable: exchange {exchange!r}, routing key {routing_key!r}") from exc
            except DeliveryError as exc:  # nacked: e.g. a full reject-publish queue dropped it
                raise BusRejected(f"the broker refused the message: {policy.describe(exc)}") from exc
            except TimeoutError as exc:
                raise BusError(f"not connected, or no confirm, within {self.timeout}s") from exc
            except _RETRYABLE as exc:
                # the connection dropped under us; the robust channel comes back by itself, but the
                # close callback may not have run yet: back off and retry until the publish timeout
                # (a lost confirm may mean a duplicate; consumers are idempotent)
                if loop.time() + backoff >= deadline:
                    raise BusError(f"publish failed: {policy.describe(exc)}") from exc
                log.warning("bus.publish_retry", exchange=exchange, routing_key=routing_key,
                            error=policy.describe(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    async def _publish_once(self, exchange: str, routing_key: str, message: aio_pika.Message) -> None:
        channel = self.channel
        if channel is None:
            raise BusError("the bus is not running")
        async with asyncio.timeout(self.timeout):
            # wait for the private queues too, so what we publish after a reconnect finds its bindings
            await self.restored.wait()
            await channel.ready()
            if exchange == "":
                target = channel.default_exchange
            else:
                target = await channel.get_exchange(exchange, ensure=False)
            await target.publish(message, routing_key, mandatory=is_mandatory(exchange))
