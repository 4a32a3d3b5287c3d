"""A single-active-consumer queue (the event log's): one consumer at a time gets the messages, in order;
when it stops or dies, the next in line takes over with everything it had not acked. Both buses."""

from __future__ import annotations

import asyncio

from shared.contracts import topology as t
from tests.integration.bus.conftest import Inbox
from tests.integration.bus.messages import SOURCE, file_created


async def publish_files(bus, first: int, count: int) -> list[str]:
    ids = []
    for n in range(first, first + count):
        await bus.publish(file_created("org-a", f"file-{n}"), source=SOURCE)
        ids.append(f"file-{n}")
    return ids


def file_ids(inbox: Inbox) -> list[str]:
    return [d.event.data["file"]["id"] for d in inbox.deliveries]


async def test_the_first_consumer_gets_everything_and_the_next_takes_over_when_it_stops(harness):
    bus_a, bus_b = await harness.bus(), await harness.bus()
    first, second = Inbox(), Inbox()
    subscription = await bus_a.consume(t.EVENT_LOG_QUEUE, first, prefetch=4)
    await bus_b.consume(t.EVENT_LOG_QUEUE, second, prefetch=4)

    sent = await publish_files(bus_a, 0, 20)
    await first.take(20)
    assert file_ids(first) == sent and second.deliveries == []  # in order, and to one consumer only

    await subscription.close()
    later = await publish_files(bus_a, 20, 10)
    await second.take(10)
    assert file_ids(second) == later
    assert len(first.deliveries) == 20


async def test_a_consumer_that_dies_hands_its_unacked_messages_to_the_next(harness):
    bus_a, bus_b = await harness.bus(), await harness.bus()
    started, release = asyncio.Event(), asyncio.Event()
    held: list[str] = []

    async def stuck(delivery):
        held.append(delivery.event.data["file"]["id"])
        started.set()
        await release.wait()  # never acks: the process dies first

    second = Inbox()
    await bus_a.consume(t.EVENT_LOG_QUEUE, stuck, prefetch=1)
    await bus_b.consume(t.EVENT_LOG_QUEUE, second, prefetch=1)
    sent = await publish_files(bus_b, 0, 5)
    await asyncio.wait_for(started.wait(), 10)
    assert second.deliveries == []

    await harness.kill(bus_a)
    await second.take(5)
    assert held == sent[:1] and file_ids(second) == sent  # the held one first, then the rest, in order
