"""Adapter affinity on the embedded bus: several workers (one `InProcessBus` each) on one broker, each consuming
its own affinity queue and the model's shared inference queue, as `services/gpu_worker` does. What the broker
does with the queues' TTL, length limit and expiry is what RabbitMQ 3.10 does (`test_affinity.py` runs the
cases both buses share; these are the timing-dependent ones, with short TTLs)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from shared.bus.inprocess import InProcessBus
from shared.bus.inprocess_broker import InProcessBroker
from shared.bus.routing import consistent_hash_pick
from shared.contracts import messages as m
from shared.contracts import topology as t
from tests.fixtures.polling import eventually
from tests.integration.bus.conftest import Inbox
from tests.integration.bus.messages import SOURCE

SLUG = "m"
SHARED = t.inference_queue(SLUG)


def job(response_id: str, lora_id: str | None = None) -> m.GenerateResponse:
    adapter = None if lora_id is None else m.AdapterRef(
        lora_id=lora_id, name=lora_id, config_file_id="file-c", weights_file_id="file-w",
        config_object_key="c", weights_object_key="w",
    )
    return m.GenerateResponse(response_id=response_id, org_id="org-a", model="loraserve/m", model_slug=SLUG,
                              messages=[m.ChatMessage(role="user", content="hi")], adapter=adapter)


def response_ids(deliveries) -> list[str]:
    return sorted(d.event.data["response_id"] for d in deliveries)


class Worker:
    def __init__(self, bus: InProcessBus, spec: t.Queue, inbox: Inbox) -> None:
        self.bus, self.spec, self.inbox = bus, spec, inbox
        self.subscriptions: list = []

    async def stop_consuming(self) -> None:
        for subscription in self.subscriptions:
            await subscription.close()

    @property
    def hot(self) -> str:
        return self.spec.name


class Cluster:
    """One broker, a bus per process."""

    def __init__(self, topology: t.Topology) -> None:
        self.topology = topology
        self.broker = InProcessBroker()
        self.buses: list[InProcessBus] = []
        self.seats = 0

    async def bus(self, *, reconnect_delay: float = 0.05) -> InProcessBus:
        bus = InProcessBus(self.topology, broker=self.broker, drain_timeout=2.0, publish_timeout=5.0,
                           reconnect_delay=reconnect_delay)
        await bus.start()
        self.buses.append(bus)
        return bus

    async def worker(self, name: str, *, handler=None, shared: bool = True, wait_ms: int = 5_000,
                     max_ready: int = 100, prefetch: int = 10,
                     reconnect_delay: float = 0.05) -> Worker:
        """A worker in the next seat of the ring."""
        bus = await self.bus(reconnect_delay=reconnect_delay)
        spec = t.affinity_queue(SLUG, self.seats, wait_ms=wait_ms, max_ready=max_ready)
        self.seats += 1
        worker = Worker(bus, spec, Inbox())
        worker.subscriptions.append(await bus.consume(spec, handler or worker.inbox, prefetch=prefetch))
        if shared:
            worker.subscriptions.append(await bus.consume(SHARED, handler or worker.inbox, prefetch=prefetch))
        return worker

    async def close(self) -> None:
        for bus in reversed(self.buses):
            await bus.close()


@pytest.fixture
async def cluster():
    made = Cluster(t.topology([SLUG]))
    yield made
    await made.close()


class Holding:
    """A handler that keeps every message unacked until released."""

    def __init__(self) -> None:
        self.held: list[str] = []
        self.release = asyncio.Event()

    async def __call__(self, delivery) -> None:
        self.held.append(delivery.event.data["response_id"])
        await self.release.wait()


def key_of(owner: Worker, ring: list[Worker]) -> str:
    """An adapter the ring (the workers' queues in the order they were bound) hashes to `owner`."""
    bindings = [(t.AFFINITY_WEIGHT, w.hot) for w in ring]
    return next(f"lora-{n}" for n in range(1000) if consistent_hash_pick(bindings, f"lora-{n}") == owner.hot)


async def test_a_job_held_unacked_past_the_wait_does_not_expire(cluster):
    publisher = await cluster.bus()
    slow = Holding()
    await cluster.worker("slow", handler=slow, shared=False, wait_ms=100)
    elsewhere = Inbox()
    await (await cluster.bus()).consume(SHARED, elsewhere)
    await publisher.publish(job("resp_slow", "lora-1"), source=SOURCE)
    await eventually(lambda: slow.held == ["resp_slow"])
    await asyncio.sleep(0.3)
    slow.release.set()
    await asyncio.sleep(0.05)
    assert elsewhere.deliveries == []


async def test_jobs_expire_into_the_shared_queue_with_nobody_consuming(cluster):
    publisher = await cluster.bus()
    worker = await cluster.worker("gone", shared=False, wait_ms=100)
    await worker.stop_consuming()  # its queue stays, bound, with no consumer
    await publisher.publish(job("resp_1", "lora-1"), source=SOURCE)
    assert await publisher.queue_depth(worker.hot) == 1

    await eventually(lambda: len(cluster.broker.queue(SHARED)) == 1)  # the broker's timer moved it
    assert len(cluster.broker.queue(worker.hot)) == 0
    moved = Inbox()
    await publisher.consume(SHARED, moved)
    delivery = await moved.next()
    assert (delivery.death.reason, delivery.death.queue, delivery.death.routing_key) == ("expired", worker.hot,
                                                                                         "lora-1")
    assert delivery.routing_key == t.inference_key(SLUG)


async def test_a_consumer_never_gets_an_expired_job(cluster):
    publisher = await cluster.bus()
    worker = await cluster.worker("late", shared=False, wait_ms=100)
    await worker.stop_consuming()
    await publisher.publish(job("resp_1", "lora-1"), source=SOURCE)
    time.sleep(0.15)  # noqa: ASYNC251 -- the process stalls past the wait: the broker timer has not run yet

    hot, shared = Inbox(), Inbox()
    await worker.bus.consume(worker.spec, hot)
    await publisher.consume(SHARED, shared)
    delivery = await shared.next()
    assert delivery.death.reason == "expired"
    assert hot.deliveries == []


async def test_every_job_is_handled_once_across_spills_and_a_crash(cluster):
    publisher = await cluster.bus()
    doomed_handler = Holding()
    doomed = await cluster.worker("doomed", handler=doomed_handler, wait_ms=150, max_ready=3, prefetch=2)
    survivor = await cluster.worker("survivor", wait_ms=150)
    lora = key_of(doomed, [doomed, survivor])
    for n in range(10):
        await publisher.publish(job(f"resp_{n}", lora), source=SOURCE)
    await eventually(lambda: len(doomed_handler.held) >= 2)
    await doomed.bus.abort()

    await eventually(lambda: len(survivor.inbox.deliveries) == 10)
    counts = Counter(d.event.data["response_id"] for d in survivor.inbox.deliveries)
    assert counts == Counter({f"resp_{n}": 1 for n in range(10)})
