"""A dying consumer, a broker that drops connections, and a graceful shutdown lose nothing."""

from __future__ import annotations

import asyncio

import pytest

from shared.contracts import topology as t
from tests.integration.bus.conftest import WAIT, Inbox
from tests.integration.bus.messages import JOBS, SOURCE, file_created, validation_job

QUEUES = {"quorum": t.VALIDATION_QUEUE, "classic": t.inference_queue("tiny")}
LIMITS = {"quorum": t.VALIDATION_DELIVERY_LIMIT, "classic": t.INFERENCE_DELIVERY_LIMIT}


class Blocking:
    """A handler that holds its message until released."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.finished: list[str] = []

    async def __call__(self, delivery) -> None:
        self.started.set()
        await self.release.wait()
        self.finished.append(delivery.event.id)


@pytest.mark.parametrize("queue_kind", ["quorum", "classic"])
async def test_consumer_killed_mid_message_loses_nothing(harness, queue_kind):
    queue = QUEUES[queue_kind]
    doomed_bus, survivor_bus = await harness.bus(), await harness.bus()
    doomed = Blocking()
    await doomed_bus.consume(queue, doomed, prefetch=1)
    event = await survivor_bus.publish(JOBS[queue_kind](), source=SOURCE)
    await asyncio.wait_for(doomed.started.wait(), WAIT)

    survivor = Inbox()
    await survivor_bus.consume(queue, survivor)
    await harness.kill(doomed_bus)

    redelivered = await survivor.next()
    assert redelivered.event.id == event.id
    assert redelivered.delivery_count == 2
    assert doomed.finished == []


@pytest.mark.parametrize("queue_kind", ["quorum", "classic"])
async def test_message_whose_consumers_keep_dying_is_dead_lettered(harness, queue_kind):
    queue, limit = QUEUES[queue_kind], LIMITS[queue_kind]
    publisher = await harness.bus()
    event = await publisher.publish(JOBS[queue_kind](), source=SOURCE)
    for _ in range(limit):
        doomed_bus, doomed = await harness.bus(), Blocking()
        await doomed_bus.consume(queue, doomed, prefetch=1)
        await asyncio.wait_for(doomed.started.wait(), WAIT)
        await harness.kill(doomed_bus)

    handled, dead = Inbox(), Inbox()
    await publisher.consume(f"{queue}.dlq", dead)
    await publisher.consume(queue, handled)
    letter = await dead.next()
    assert letter.event.id == event.id
    assert (letter.death.reason, letter.death.queue) == ("delivery_limit", queue)
    assert letter.death.count == limit + 1  # the last delivery found the limit used up
    assert handled.deliveries == []


async def test_bus_reconnects_after_the_broker_drops_the_connection(harness):
    bus = await harness.bus()
    jobs, events = Inbox(), Inbox()
    await bus.consume(t.VALIDATION_QUEUE, jobs)
    await bus.subscribe(t.EVENTS, ["org.org-a.#"], events)
    await bus.publish(validation_job("val-before"), source=SOURCE)
    assert (await jobs.next()).event.data["validation_id"] == "val-before"

    await harness.drop_connections()

    # the same bus object, not restarted: publishing waits for the reconnect
    await bus.publish(validation_job("val-after"), source=SOURCE)
    assert (await jobs.next()).event.data["validation_id"] == "val-after"
    await bus.publish(file_created("org-a", "file-after"), source=SOURCE)
    assert (await events.next()).event.data["file"]["id"] == "file-after"
    assert await bus.ready()


async def test_close_waits_for_the_running_handler_and_acks_it(harness):
    bus = await harness.bus()
    blocking = Blocking()
    await bus.consume(t.VALIDATION_QUEUE, blocking)
    event = await bus.publish(validation_job("val-drained"), source=SOURCE)
    await asyncio.wait_for(blocking.started.wait(), WAIT)

    closing = asyncio.create_task(bus.close())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not closing.done()  # still draining the handler
    blocking.release.set()
    await asyncio.wait_for(closing, WAIT)
    assert blocking.finished == [event.id]

    next_bus = await harness.bus()
    inbox = Inbox()
    await next_bus.consume(t.VALIDATION_QUEUE, inbox)
    await next_bus.publish(validation_job("val-next"), source=SOURCE)
    assert (await inbox.next()).event.data["validation_id"] == "val-next"  # the drained one was acked
