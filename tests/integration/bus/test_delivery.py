"""Routing, acks, requeues, dead letters, priorities and confirms: the same cases on both buses."""

from __future__ import annotations

import pytest

from shared.bus.base import BusError, DeadLetter, Requeue
from shared.contracts import topology as t
from shared.contracts.messages import CancelResponse
from tests.integration.bus.conftest import Inbox
from tests.integration.bus.messages import JOBS, SOURCE, file_created, inference_job, validation_job

QUEUES = {"quorum": t.VALIDATION_QUEUE, "classic": t.inference_queue("tiny")}
LIMITS = {"quorum": t.VALIDATION_DELIVERY_LIMIT, "classic": t.INFERENCE_DELIVERY_LIMIT}


async def test_topic_binding_for_one_org_sees_only_that_org(harness):
    bus = await harness.bus()
    org_a, every_org = Inbox(), Inbox()
    await bus.subscribe(t.EVENTS, ["org.org-a.#"], org_a)
    await bus.subscribe(t.EVENTS, ["org.*.file.created"], every_org)

    await bus.publish(file_created("org-b", "file-b"), source=SOURCE)
    await bus.publish(file_created("org-a", "file-a"), source=SOURCE)

    seen_by_all = await every_org.take(2)
    assert [d.event.data["org_id"] for d in seen_by_all] == ["org-b", "org-a"]
    only_a = await org_a.next()  # org-b's event was published first: it would have come first
    assert only_a.event.data["file"]["id"] == "file-a"
    assert only_a.routing_key == "org.org-a.file.created"
    assert [d.event.data["org_id"] for d in org_a.deliveries] == ["org-a"]


async def test_fanout_cancel_reaches_every_subscriber(harness):
    bus = await harness.bus()
    first, second = Inbox(), Inbox()
    await bus.subscribe(t.cancels_exchange("tiny"), [], first)
    await bus.subscribe(t.cancels_exchange("tiny"), [], second)

    cancel = CancelResponse(response_id="resp_9", org_id="org-a", model_slug="tiny")
    await bus.publish(cancel, source=SOURCE, exchange=t.cancels_exchange("tiny"))

    assert (await first.next()).event.data["response_id"] == "resp_9"
    assert (await second.next()).event.data["response_id"] == "resp_9"


async def test_publish_is_confirmed_and_carries_the_cloudevent(harness):
    bus = await harness.bus()
    event = await bus.publish(validation_job("val-7"), source=SOURCE, correlation_id="req-7")

    assert await bus.queue_depth(t.VALIDATION_QUEUE) == 1
    inbox = Inbox()
    await bus.consume(t.VALIDATION_QUEUE, inbox)
    delivery = await inbox.next()
    assert delivery.event.id == event.id
    assert delivery.event.type == "loraserve.validation.validate"
    assert delivery.event.correlationid == "req-7"
    assert delivery.event.data["validation_id"] == "val-7"
    assert delivery.delivery_count == 1


async def test_unroutable_publish_raises_and_the_bus_keeps_working(harness):
    bus = await harness.bus()
    with pytest.raises(BusError):
        await bus.publish(validation_job(slug="no-such-model"), source=SOURCE)
    with pytest.raises(BusError):
        await bus.publish(validation_job(), source=SOURCE, exchange="loraserve.no-such-exchange")

    await bus.publish(validation_job(), source=SOURCE)
    assert await bus.queue_depth(t.VALIDATION_QUEUE) == 1


async def test_an_event_or_cancel_nobody_listens_to_is_not_an_error(harness):
    bus = await harness.bus()
    await bus.publish(file_created("org-nobody-listens", "file-1"), source=SOURCE)
    cancel = CancelResponse(response_id="resp_x", org_id="org-a", model_slug="tiny")
    await bus.publish(cancel, source=SOURCE, exchange=t.cancels_exchange("tiny"))


async def test_acked_message_is_not_delivered_again(harness):
    first_bus = await harness.bus()
    first = Inbox()
    await first_bus.consume(t.VALIDATION_QUEUE, first)
    await first_bus.publish(validation_job("val-acked"), source=SOURCE)
    await first.next()
    await first_bus.close()  # drains: the ack has gone out

    second_bus = await harness.bus()
    second = Inbox()
    await second_bus.consume(t.VALIDATION_QUEUE, second)
    await second_bus.publish(validation_job("val-next"), source=SOURCE)
    assert (await second.next()).event.data["validation_id"] == "val-next"


@pytest.mark.parametrize("queue_kind", ["quorum", "classic"])
async def test_requeued_message_comes_back_counted(harness, queue_kind):
    bus = await harness.bus()
    inbox = Inbox()

    async def requeue_once(delivery):
        await inbox(delivery)
        if delivery.delivery_count == 1:
            raise Requeue()

    await bus.consume(QUEUES[queue_kind], requeue_once)
    event = await bus.publish(JOBS[queue_kind](), source=SOURCE)

    first, second = await inbox.take(2)
    assert (first.event.id, first.delivery_count) == (event.id, 1)
    assert (second.event.id, second.delivery_count) == (event.id, 2)


@pytest.mark.parametrize("queue_kind", ["quorum", "classic"])
async def test_failing_message_is_redelivered_then_dead_lettered_with_the_reason(harness, queue_kind):
    bus = await harness.bus()
    queue, limit = QUEUES[queue_kind], LIMITS[queue_kind]
    attempts, dead = Inbox(), Inbox()

    async def always_fails(delivery):
        await attempts(delivery)
        raise RuntimeError("weights unreadable")

    await bus.consume(queue, always_fails)
    await bus.consume(f"{queue}.dlq", dead)
    event = await bus.publish(JOBS[queue_kind](), source=SOURCE, priority=5)

    letter = await dead.next()
    assert [d.delivery_count for d in attempts.deliveries] == list(range(1, limit + 1))
    assert letter.event.id == event.id
    assert letter.death.reason == "delivery_limit"
    assert letter.death.queue == queue
    assert letter.death.count == limit
    assert "weights unreadable" in letter.death.error


@pytest.mark.parametrize("queue_kind", ["quorum", "classic"])
async def test_dead_letter_raised_by_handler_skips_the_retries(harness, queue_kind):
    bus = await harness.bus()
    queue = QUEUES[queue_kind]
    attempts, dead = Inbox(), Inbox()

    async def refuses(delivery):
        await attempts(delivery)
        raise DeadLetter("adapter config missing")

    await bus.consume(queue, refuses)
    await bus.consume(f"{queue}.dlq", dead)
    await bus.publish(JOBS[queue_kind](), source=SOURCE)

    letter = await dead.next()
    assert len(attempts.deliveries) == 1
    assert (letter.death.reason, letter.death.count) == ("rejected", 1)
    assert "adapter config missing" in letter.death.error


async def test_malformed_message_is_dead_lettered_without_reaching_the_handler(harness):
    bus = await harness.bus()
    handled = Inbox()
    await bus.consume(t.VALIDATION_QUEUE, handled, prefetch=1)  # one at a time: the bad one settles first

    await harness.publish_raw(t.COMMANDS, t.validate_key("tiny"), b"{not a cloudevent")
    await bus.publish(validation_job("val-good"), source=SOURCE)

    assert (await handled.next()).event.data["validation_id"] == "val-good"
    assert len(handled.deliveries) == 1
    assert await bus.queue_depth(f"{t.VALIDATION_QUEUE}.dlq") == 1


async def test_priority_queue_delivers_highest_priority_first(harness):
    bus = await harness.bus()
    queue = t.inference_queue("tiny")
    for priority in (1, 9, 5, 7):
        await bus.publish(inference_job(f"resp_p{priority}"), source=SOURCE, priority=priority)

    inbox = Inbox()
    await bus.consume(queue, inbox, prefetch=1)
    received = await inbox.take(4)
    assert [d.priority for d in received] == [9, 7, 5, 1]
    assert [d.event.data["response_id"] for d in received] == ["resp_p9", "resp_p7", "resp_p5", "resp_p1"]
