"""Two delivery workers on one database (two replicas of the webhooks service) never send the same attempt, and a
delivery claimed by a worker that died is sent by another once the claim lapses."""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from mongomock_motor import AsyncMongoMockClient

from services.webhooks import signing
from services.webhooks.catalog import webhook_event
from services.webhooks.delivery_repo import DeliveryRepository
from services.webhooks.delivery_worker import DeliveryWorker, RetryPolicy, WorkerConfig
from services.webhooks.egress import Egress
from services.webhooks.repository import EndpointRepository
from services.webhooks.secrets import SecretBox
from shared.settings import Settings
from tests.integration.webhooks.deliveries_harness import Receiver, response_completed, verify, wait_until

CONFIG = WorkerConfig(RetryPolicy(0.01, 0.05, 3600.0), disable_after_seconds=3600.0, concurrency=4,
                      poll_seconds=0.02, claim_seconds=30.0)


class CountingEgress(Egress):
    """The real egress, counting what this replica sent."""

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.sent = 0

    async def post(self, url, body, headers):
        self.sent += 1
        return await super().post(url, body, headers)


@dataclass
class Replicas:
    deliveries: DeliveryRepository
    endpoints: EndpointRepository
    endpoint: dict
    secret: str
    receiver: Receiver

    def worker(self) -> tuple[DeliveryWorker, CountingEgress]:
        egress = CountingEgress(Settings())
        return DeliveryWorker(self.deliveries, self.endpoints, egress, CONFIG), egress

    async def store_events(self, count: int, now: float, claim_seconds: float = 0.0) -> list[dict]:
        """Deliveries stored as a fanout stores them (claimed by it for `claim_seconds`)."""
        stored = []
        for _ in range(count):
            event = webhook_event(response_completed().to_event("loraserve/test"))
            stored.append(await self.deliveries.add(event, self.endpoint["id"], now, claim_seconds))
        return stored


@pytest.fixture
async def replicas() -> AsyncIterator[Replicas]:
    database = AsyncMongoMockClient()["webhooks"]
    endpoints = EndpointRepository(database, SecretBox.from_settings(Settings()))
    deliveries = DeliveryRepository(database)
    await endpoints.ensure_indexes()
    await deliveries.ensure_indexes()
    receiver = await Receiver().start()
    secret = signing.new_secret()
    endpoint = await endpoints.insert("org-a", "replicas", receiver.url, ["response.completed"], secret)
    yield Replicas(deliveries, endpoints, endpoint, secret, receiver)
    await receiver.stop()


async def test_two_workers_on_one_database_send_each_delivery_once(replicas):
    await replicas.store_events(40, now=0.0)
    (first, first_egress), (second, second_egress) = replicas.worker(), replicas.worker()
    first.start()
    second.start()
    try:
        requests = await replicas.receiver.wait_for(40)
        await wait_until(lambda: all_delivered(replicas.deliveries, 40), "every delivery recorded")
    finally:
        await first.stop()
        await second.stop()
    assert Counter(h["webhook-id"] for h, _ in requests).most_common(1)[0][1] == 1
    assert len(requests) == first_egress.sent + second_egress.sent == 40
    assert first_egress.sent > 0 and second_egress.sent > 0
    for headers, body in requests:
        verify(replicas.secret, headers, body)


async def test_a_claim_whose_worker_died_is_sent_by_another_after_it_lapses(replicas):
    # stored and claimed by a process that died before attempting it
    (died,) = await replicas.store_events(1, now=time.time(), claim_seconds=0.3)
    assert await replicas.deliveries.claim_due(time.time(), lease_seconds=30.0) is None  # still held
    worker, egress = replicas.worker()
    worker.start()
    try:
        (headers, body), = await replicas.receiver.wait_for(1)
        await wait_until(lambda: all_delivered(replicas.deliveries, 1), "the delivery recorded")
    finally:
        await worker.stop()
    assert headers["webhook-id"] == died["webhook_id"]
    assert body.decode() == died["body"]
    assert egress.sent == 1


async def all_delivered(deliveries: DeliveryRepository, count: int) -> bool:
    return await deliveries.count({"status": "delivered"}) == count
