"""A receiver that is down while the delivering process restarts still gets every event, once per webhook-id:
deliveries live in the database, not in the process; on RabbitMQ the events published while the process was
down wait in its durable queue."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from services.webhooks.catalog import EVENT_TYPES
from shared.bus.rabbitmq import RabbitBus
from shared.catalogue.catalogue import load_catalogue
from shared.contracts.topology import topology
from tests.fixtures.rabbit import private_vhost
from tests.integration.webhooks.deliveries_harness import (
    Receiver,
    Service,
    response_completed,
    start_service,
    validation_finished,
    verify,
    wait_until,
)


@pytest.fixture(scope="module")
def vhost_url() -> AsyncIterator[str]:
    # its own vhost: no other suite's events wait in the webhooks queue
    with private_vhost("loraserve-webhooks") as url:
        yield url


async def attempted(service: Service, endpoint_id: str, count: int):
    page = await service.deliveries(endpoint_id, limit=100)
    tried = [d for d in page["data"] if d["attempts"]]
    return tried if len(tried) >= count else None


async def publish_while_down(amqp_url: str, messages) -> None:
    """Another service publishing while the webhooks process is stopped."""
    bus = RabbitBus(amqp_url, topology(load_catalogue().slugs()))
    await bus.start()
    try:
        for message in messages:
            await bus.publish(message, source="loraserve/test")
    finally:
        await bus.close()


async def restart_with_receiver_down(tmp_path, amqp_url: str | None, while_down: list) -> None:
    receiver = Receiver()  # not started: connections to it are refused
    before = [response_completed(), validation_finished(status="failed"), response_completed()]
    first = await start_service(tmp_path, amqp_url=amqp_url)
    try:
        endpoint = await first.sdk().webhooks.create(name="down", url=receiver.url, event_types=list(EVENT_TYPES))
        for message in before:
            await first.publish(message)
        tried = await wait_until(lambda: attempted(first, endpoint.id, len(before)), "failed first attempts")
        assert all(d["status"] == "pending" and d["attempts"][0]["status_code"] is None for d in tried)
        assert all(d["next_attempt_at"] is not None for d in tried)
    finally:
        await first.stop()
    if while_down:
        await publish_while_down(amqp_url, while_down)
    await receiver.start()
    second = await start_service(tmp_path, keys=first.keys, amqp_url=amqp_url)
    try:
        expected = len(before) + len(while_down)
        requests = await receiver.wait_for(expected)
        await wait_until(lambda: all_delivered(second, endpoint.id, expected), "every delivery marked delivered")
    finally:
        await second.stop()
        await receiver.stop()
    events = [verify(endpoint.signing_secret, headers, body) for headers, body in requests]
    assert len(requests) == expected
    assert len({headers["webhook-id"] for headers, _ in requests}) == expected  # none twice
    sent = {(m.response if hasattr(m, "response") else m.lora)["id"] for m in before + while_down}
    assert {json.loads(body)["data"]["id"] for _, body in requests} == sent
    assert {e.type for e in events} <= set(EVENT_TYPES)


async def all_delivered(service: Service, endpoint_id: str, count: int):
    page = await service.deliveries(endpoint_id, limit=100)
    return len(page["data"]) == count and all(d["status"] == "delivered" for d in page["data"])


async def test_a_receiver_down_across_a_restart_gets_every_event(tmp_path):
    await restart_with_receiver_down(tmp_path, None, while_down=[])


@pytest.mark.rabbitmq
async def test_events_published_while_the_process_is_down_are_delivered_after_it_restarts(tmp_path, vhost_url):
    await restart_with_receiver_down(tmp_path, vhost_url,
                                     while_down=[response_completed(), validation_finished(status="unverified")])
