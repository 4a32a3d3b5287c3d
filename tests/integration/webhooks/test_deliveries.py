"""Webhook deliveries as a customer sees them: public events reach subscribed endpoints signed so the official SDK's
`webhooks.unwrap` accepts them, failures are retried with the same webhook-id and body, rotated secrets sign too,
an endpoint that keeps failing is disabled, and the delivery log tells what happened."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator

import openai
import pytest
from openai.types.webhooks import ResponseCompletedWebhookEvent

from services.webhooks.catalog import EVENT_TYPES
from tests.integration.webhooks.deliveries_harness import (
    Receiver,
    Service,
    lora_deleted,
    response_completed,
    response_failed,
    start_service,
    validation_finished,
    verify,
    wait_until,
)


@pytest.fixture
async def service(tmp_path) -> AsyncIterator[Service]:
    started = await start_service(tmp_path)
    yield started
    await started.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


async def subscribe(service: Service, receiver: Receiver, org: str = "org-a", event_types=EVENT_TYPES):
    return await service.sdk(org).webhooks.create(name=f"{org} hooks", url=receiver.url,
                                                  event_types=list(event_types))


async def delivered(service: Service, endpoint_id: str, count: int, org: str = "org-a") -> list[dict]:
    async def check():
        page = await service.deliveries(endpoint_id, org, limit=100)
        done = [d for d in page["data"] if d["status"] == "delivered"]
        return done if len(done) >= count else None
    return await wait_until(check, f"{count} delivered deliveries")


async def test_each_event_type_arrives_signed_in_the_sdks_shape(service, receiver):
    endpoint = await subscribe(service, receiver)
    messages = [validation_finished(status="succeeded", code=None), validation_finished(status="failed"),
                validation_finished(status="unverified", code="validation_dead_lettered"), lora_deleted(),
                response_completed(), response_failed()]
    for message in messages:
        await service.publish(message)
    requests = await receiver.wait_for(len(messages))
    events = [verify(endpoint.signing_secret, headers, body) for headers, body in requests]
    assert sorted(e.type for e in events) == sorted(["lora.validation.succeeded", "lora.validation.failed",
                                                     "lora.validation.unverified", "lora.deleted",
                                                     "response.completed", "response.failed"])
    completed = next(e for e in events if e.type == "response.completed")
    assert isinstance(completed, ResponseCompletedWebhookEvent)
    assert completed.data.id == messages[4].response["id"]
    failed = next(json.loads(b) for _, b in requests if json.loads(b)["type"] == "lora.validation.failed")
    assert (failed["data"]["result_code"], failed["data"]["model"]) == ("rank_too_large", "loraserve/kimi-k2-tiny")
    assert all(h["webhook-id"].startswith("whdel_") for h, _ in requests)
    log = await delivered(service, endpoint.id, len(messages))
    assert {d["webhook_id"] for d in log} == {h["webhook-id"] for h, _ in requests}
    assert all(d["attempts"][0]["status_code"] == 200 and d["next_attempt_at"] is None for d in log)


async def test_only_the_subscribed_types_are_delivered(service, receiver):
    endpoint = await subscribe(service, receiver, event_types=["response.failed"])
    await service.publish(response_completed())
    failed = response_failed()
    await service.publish(failed)
    (headers, body), = await receiver.wait_for(1)
    assert verify(endpoint.signing_secret, headers, body).data.id == failed.response["id"]
    log = await delivered(service, endpoint.id, 1)
    assert [d["event_type"] for d in log] == ["response.failed"]


async def test_a_receiver_failing_three_times_gets_the_event_exactly_as_first_sent(service):
    receiver = await Receiver(statuses=[500, 502, 503]).start()
    try:
        endpoint = await subscribe(service, receiver)
        await service.publish(response_completed())
        requests = await receiver.wait_for(4)
    finally:
        await receiver.stop()
    assert len({h["webhook-id"] for h, _ in requests}) == 1
    assert len({body for _, body in requests}) == 1
    for headers, body in requests:
        verify(endpoint.signing_secret, headers, body)  # each attempt signed afresh, within the SDK's window
    (log,) = await delivered(service, endpoint.id, 1)
    assert [a["status_code"] for a in log["attempts"]] == [500, 502, 503, 200]
    assert all(a["latency_ms"] >= 0 and a["error"] is None for a in log["attempts"])
    assert log["attempt_count"] == 4 and log["event"] == json.loads(requests[0][1])


async def test_a_redelivered_bus_event_makes_no_second_delivery(service, receiver):
    endpoint = await subscribe(service, receiver)
    cloud_event = response_completed().to_event("loraserve/test")
    key = f"org.org-a.{cloud_event.type}"
    await service.platform.bus.publish_event(cloud_event, exchange="loraserve.events", routing_key=key)
    await receiver.wait_for(1)
    await service.platform.bus.publish_event(cloud_event, exchange="loraserve.events", routing_key=key)
    marker = response_failed()  # consumed after the re-publish: once it is delivered, the re-publish was handled
    await service.publish(marker)
    await delivered(service, endpoint.id, 2)
    page = await service.deliveries(endpoint.id)
    assert sorted(d["event_type"] for d in page["data"]) == ["response.completed", "response.failed"]
    assert len(receiver.requests) == 2


async def test_another_orgs_endpoint_never_hears_an_orgs_events(service, receiver):
    other = await Receiver().start()
    try:
        mine = await subscribe(service, receiver, "org-a")
        theirs = await subscribe(service, other, "org-b")
        await service.publish(response_completed("org-a"))
        await service.publish(lora_deleted("org-a"))
        marker = response_completed("org-b")
        await service.publish(marker)
        await delivered(service, mine.id, 2, "org-a")
        await delivered(service, theirs.id, 1, "org-b")
        assert [verify(theirs.signing_secret, h, b).data.id for h, b in other.requests] == [marker.response["id"]]
        assert len(receiver.requests) == 2
        response = await service.client.get(f"/v1/webhook_endpoints/{mine.id}/deliveries",
                                             headers=service.auth("org-b"))
        assert response.status == 404
        assert (await response.json())["error"]["type"] == "not_found_error"
    finally:
        await other.stop()


async def test_after_rotate_secret_deliveries_verify_with_the_old_and_the_new_secret(service, receiver):
    endpoint = await subscribe(service, receiver)
    rotated = await service.sdk().webhooks.rotate_secret(endpoint.id, keep_old_secret_active_for_24_hours=True)
    await service.publish(response_completed())
    (headers, body), = await receiver.wait_for(1)
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (endpoint.signing_secret, rotated.signing_secret):
        assert verify(secret, headers, body).type == "response.completed"
    again = await service.sdk().webhooks.rotate_secret(endpoint.id)  # the old one retired at once
    await service.publish(response_completed())
    (_, _), (headers, body) = await receiver.wait_for(2)
    verify(again.signing_secret, headers, body)
    for retired in (endpoint.signing_secret, rotated.signing_secret):
        with pytest.raises(openai.InvalidWebhookSignatureError):
            verify(retired, headers, body)


async def test_the_delivery_log_pages_like_the_sdks_lists(service, receiver):
    endpoint = await subscribe(service, receiver)
    for _ in range(5):
        await service.publish(response_completed())
    await delivered(service, endpoint.id, 5)
    first = await service.deliveries(endpoint.id, limit=2)
    assert (first["object"], len(first["data"]), first["has_more"]) == ("list", 2, True)
    assert first["data"][0]["object"] == "webhook_delivery"
    assert first["data"][0]["webhook_endpoint_id"] == endpoint.id
    second = await service.deliveries(endpoint.id, limit=2, after=first["last_id"])
    third = await service.deliveries(endpoint.id, limit=2, after=second["last_id"])
    assert (len(third["data"]), third["has_more"]) == (1, False)
    ids = [d["id"] for page in (first, second, third) for d in page["data"]]
    assert len(set(ids)) == 5
    created = [d["created_at"] for page in (first, second, third) for d in page["data"]]
    assert created == sorted(created, reverse=True)
    response = await service.client.get(f"/v1/webhook_endpoints/{endpoint.id}/deliveries",
                                         params={"after": "whdel_nope"}, headers=service.auth())
    assert response.status == 400 and (await response.json())["error"]["param"] == "after"
    response = await service.client.get(f"/v1/webhook_endpoints/{endpoint.id}/deliveries",
                                        params={"limit": "0"}, headers=service.auth())
    assert response.status == 400 and (await response.json())["error"]["param"] == "limit"
    response = await service.client.get("/v1/webhook_endpoints/whep_nope/deliveries", headers=service.auth())
    assert response.status == 404


async def test_the_log_keeps_ended_deliveries_for_the_retention_only(tmp_path, receiver):
    service = await start_service(tmp_path, webhook_delivery_retention_seconds=0.3)
    try:
        endpoint = await subscribe(service, receiver)
        await service.publish(response_completed())
        await receiver.wait_for(1)

        async def emptied():
            return not (await service.deliveries(endpoint.id))["data"]

        await wait_until(emptied, "the delivered delivery to leave the log")
    finally:
        await service.stop()
