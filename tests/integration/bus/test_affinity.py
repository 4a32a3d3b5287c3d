"""Adapter-affinity routing between one model's workers, on both buses: a job goes to the worker its adapter hashes
to, falls back to the shared queue when that worker's queue is full or gone, and is never lost or duplicated."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from services.gpu_worker.affinity import route_of
from shared.bus.base import DeadLetter
from shared.contracts import messages as m
from shared.contracts import topology as t
from tests.fixtures.polling import eventually
from tests.integration.bus.conftest import SLUGS, Inbox
from tests.integration.bus.messages import SOURCE, inference_job

SLUG = SLUGS[0]
SHARED = t.inference_queue(SLUG)


def adapter_job(response_id: str, lora_id: str) -> m.GenerateResponse:
    adapter = m.AdapterRef(lora_id=lora_id, name=lora_id, config_file_id="file-c", weights_file_id="file-w",
                           config_object_key="c", weights_object_key="w")
    return inference_job(response_id, SLUG).model_copy(update={"adapter": adapter})


@pytest.fixture
async def hot_queue(harness):
    """Makes seats of the ring (one per worker of a test), deleted after it (RabbitMQ's vhost lives for the run)."""
    made: list[str] = []

    def make(worker: str, *, wait_ms: int = 30_000, max_ready: int = 100) -> t.Queue:
        spec = t.affinity_queue(SLUG, len(made), wait_ms=wait_ms, max_ready=max_ready)
        made.append(spec.name)
        return spec

    yield make
    await harness.close_all()  # first: a live consumer's robust channel could declare its queue again
    for name in made:
        await harness.delete_queue(name)


def response_ids(inbox: Inbox) -> list[str]:
    return [d.event.data["response_id"] for d in inbox.deliveries]


async def test_each_adapter_goes_to_one_worker_and_the_adapters_spread_over_the_workers(harness, hot_queue):
    bus = await harness.bus()
    workers = [Inbox() for _ in range(3)]
    for n, inbox in enumerate(workers):
        await (await harness.bus()).consume(hot_queue(f"w{n}"), inbox, prefetch=100)
    shared = Inbox()
    await bus.consume(SHARED, shared, prefetch=100)

    for n in range(60):
        await bus.publish(adapter_job(f"resp_{n}", f"lora-{n % 12}"), source=SOURCE)
    await eventually(lambda: sum(len(w.deliveries) for w in workers) == 60)

    owner = {}
    for n, inbox in enumerate(workers):
        for delivery in inbox.deliveries:
            lora = delivery.event.data["adapter"]["lora_id"]
            assert owner.setdefault(lora, n) == n, f"{lora} reached two workers"
    assert len(set(owner.values())) >= 2  # 12 adapters over 3 workers: not all on one
    assert shared.deliveries == []


async def test_base_model_jobs_and_a_topology_without_affinity_use_the_shared_queue(harness, hot_queue):
    bus = await harness.bus()
    hot, shared = Inbox(), Inbox()
    await (await harness.bus()).consume(hot_queue("w"), hot, prefetch=10)
    await bus.consume(SHARED, shared, prefetch=10)
    await bus.publish(inference_job("resp_base", SLUG), source=SOURCE)
    await shared.take(1)

    harness.topology = t.topology(SLUGS, adapter_affinity=False)
    plain = await harness.bus()
    await plain.publish(adapter_job("resp_plain", "lora-1"), source=SOURCE)
    await shared.take(1)
    assert response_ids(shared) == ["resp_base", "resp_plain"] and hot.deliveries == []


async def test_with_no_worker_bound_a_job_goes_to_the_shared_queue(harness, hot_queue):
    bus = await harness.bus()
    shared = Inbox()
    await bus.consume(SHARED, shared, prefetch=10)
    stream = await bus.request(adapter_job("resp_1", "lora-1"), source=SOURCE)
    await shared.take(1)
    await stream.close()
    assert shared.deliveries[0].queue == SHARED


async def test_a_busy_workers_overflow_goes_straight_to_the_shared_queue(harness, hot_queue):
    bus = await harness.bus()
    release = asyncio.Event()
    held: list[str] = []

    async def busy(delivery):
        held.append(delivery.event.data["response_id"])
        await release.wait()

    await (await harness.bus()).consume(hot_queue("busy", max_ready=2), busy, prefetch=1)
    shared = Inbox()
    await bus.consume(SHARED, shared, prefetch=10)
    for n in range(6):
        await bus.publish(adapter_job(f"resp_{n}", "lora-hot"), source=SOURCE)
    await shared.take(3)  # one delivered, two waiting for the worker; the rest did not wait (TTL is 30 s)
    release.set()
    await eventually(lambda: len(held) == 3)
    assert sorted(held + response_ids(shared)) == [f"resp_{n}" for n in range(6)]


async def test_jobs_a_dead_worker_held_reach_another_worker_after_the_wait(harness, hot_queue):
    bus = await harness.bus()
    started = asyncio.Event()

    async def stuck(delivery):
        started.set()
        await asyncio.Event().wait()  # the process dies before it acks

    doomed = await harness.bus()
    await doomed.consume(hot_queue("doomed", wait_ms=300), stuck, prefetch=2)
    for n in range(4):
        await bus.publish(adapter_job(f"resp_{n}", "lora-1"), source=SOURCE)
    await asyncio.wait_for(started.wait(), 10)
    await harness.kill(doomed)

    survivor = Inbox()
    await bus.consume(SHARED, survivor, prefetch=10)
    await survivor.take(4)
    assert sorted(response_ids(survivor)) == [f"resp_{n}" for n in range(4)]
    assert Counter(d.death.reason for d in survivor.deliveries if d.death) == Counter({"expired": 4})
    assert {route_of(d, SHARED) for d in survivor.deliveries} == {"shared_after_wait"}  # the worker's metric


async def test_a_failed_job_is_retried_from_the_shared_queue_and_its_dead_letter_lands_in_the_shared_dlq(harness, hot_queue):
    bus = await harness.bus()

    async def fails(delivery):
        if delivery.event.data["response_id"] == "resp_poison":
            raise DeadLetter("can never run")
        raise RuntimeError("transient")

    await (await harness.bus()).consume(hot_queue("flaky"), fails, prefetch=1)
    retried, dead = Inbox(), Inbox()
    await bus.consume(SHARED, retried, prefetch=1)
    await bus.consume(harness.topology.queue(SHARED).dlq_name, dead, prefetch=1)
    await bus.publish(adapter_job("resp_retry", "lora-1"), source=SOURCE)
    delivery = await retried.next()
    assert delivery.event.data["response_id"] == "resp_retry" and delivery.delivery_count == 2

    await bus.publish(adapter_job("resp_poison", "lora-1"), source=SOURCE)
    letter = await dead.next()
    assert letter.event.data["response_id"] == "resp_poison" and letter.death.reason == "rejected"
