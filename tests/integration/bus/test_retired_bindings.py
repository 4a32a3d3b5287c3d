"""The router's status queue hears the workers' status events only, also on a broker that kept the
binding of an earlier release (`org.*.response.#`, which caught the public response.<outcome> events)."""

from __future__ import annotations

import aio_pika

from shared.contracts import topology as t
from shared.contracts.messages import ResponseCompleted, ResponseStatusChanged
from tests.integration.bus.messages import SOURCE


async def bind_as_an_earlier_release_did(url: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_exchange(t.EVENTS, "topic", durable=True)
        spec = t.topology([]).queue(t.ROUTER_RESPONSES_QUEUE)
        queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments())
        await queue.bind(t.EVENTS, "org.*.response.#")


async def test_public_outcomes_do_not_reach_the_routers_status_queue(harness):
    if harness.kind == "rabbitmq":
        await bind_as_an_earlier_release_did(harness.rabbit_url)
    bus = await harness.bus()
    await bus.publish(ResponseCompleted(org_id="org-a", response={"id": "resp_1"}), source=SOURCE)
    await bus.publish(ResponseStatusChanged(response_id="resp_1", org_id="org-a", model="m", status="completed",
                                            seq=2), source=SOURCE)
    assert await bus.queue_depth(t.ROUTER_RESPONSES_QUEUE) == 1
