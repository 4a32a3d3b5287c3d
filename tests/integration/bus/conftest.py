"""Every bus case runs twice: on the in-process bus and on RabbitMQ for real (a private vhost).

A `BusHarness` makes started buses that share one broker, and plays the broker's part
in failure cases: dropping every connection, or a consumer process dying.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aio_pika
import pytest
from aiormq.exceptions import ChannelNotFoundEntity

from shared.bus.base import Bus
from shared.bus.inprocess import InProcessBus
from shared.bus.inprocess_broker import Envelope, InProcessBroker
from shared.bus.rabbitmq import RabbitBus
from shared.contracts.topology import Topology, topology
from tests.fixtures.inbox import Inbox as _Inbox

SLUGS = ["tiny"]
WAIT = 10.0  # seconds before a test gives up waiting for a message that should come (a hang guard)


@dataclass
class BusHarness:
    kind: str
    topology: Topology
    rabbit_url: str | None = None
    broker: InProcessBroker = field(default_factory=InProcessBroker)
    buses: list[Bus] = field(default_factory=list)

    async def bus(self) -> Bus:
        if self.kind == "inprocess":
            bus: Bus = InProcessBus(self.topology, broker=self.broker, drain_timeout=5.0, publish_timeout=5.0)
        else:
            bus = RabbitBus(
                self.rabbit_url,
                self.topology,
                drain_timeout=5.0,
                publish_timeout=5.0,
                reconnect_interval=0.2,
                connection_name=f"bus-test-{len(self.buses)}",
            )
        await bus.start()
        if not self.buses and self.kind == "rabbitmq":
            await _purge(self.rabbit_url, self.topology)
        self.buses.append(bus)
        return bus

    async def drop_connections(self) -> None:
        """The broker closes every client connection (RabbitMQ: rabbitmqctl close_all_connections)."""
        if self.kind == "inprocess":
            self.broker.close_all_connections()
            return
        vhost = self.rabbit_url.rsplit("/", 1)[1]
        process = await asyncio.create_subprocess_exec(
            "rabbitmqctl",
            "-q",
            "close_all_connections",
            "-p",
            vhost,
            "dropped by the bus test",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()

    async def publish_raw(self, exchange: str, routing_key: str, body: bytes) -> None:
        """Put bytes on the bus that no `Bus.publish` would send (a foreign or broken publisher)."""
        if self.kind == "inprocess":
            self.broker.publish(Envelope(body, exchange, routing_key))
            return
        connection = await aio_pika.connect(self.rabbit_url)
        async with connection:
            channel = await connection.channel()
            target = await channel.get_exchange(exchange)
            await target.publish(aio_pika.Message(body), routing_key)

    async def delete_queue(self, name: str) -> None:
        """Remove a queue a consumer declared for itself (the vhost outlives the test)."""
        if self.kind == "inprocess":
            self.broker.delete_queue(name)
            return
        connection = await aio_pika.connect(self.rabbit_url)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(name)

    async def kill(self, bus: Bus) -> None:
        """The consumer process dies: its connection goes, nothing is acked."""
        await bus.abort()  # type: ignore[attr-defined]

    async def close_all(self) -> None:
        for bus in reversed(self.buses):
            await bus.close()


async def _purge(url: str, topo: Topology) -> None:
    """The vhost lives for the session and queue names are fixed: start each test from empty queues."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for spec in (*topo.queues, *topo.dead_letter_queues):
            try:
                queue = await channel.declare_queue(spec.name, passive=True)
                await queue.purge()
            except ChannelNotFoundEntity:
                channel = await connection.channel()


@pytest.fixture(params=["inprocess", "rabbitmq"])
async def harness(request):
    url = request.getfixturevalue("rabbit_url") if request.param == "rabbitmq" else None
    harness = BusHarness(request.param, topology(SLUGS), rabbit_url=url)
    yield harness
    await harness.close_all()


class Inbox(_Inbox):
    def __init__(self) -> None:
        super().__init__(wait=WAIT)
