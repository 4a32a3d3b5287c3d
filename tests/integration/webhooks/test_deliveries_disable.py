"""An endpoint whose deliveries keep failing is disabled after the disable window (seconds here, days by default):
the SDK shows it `disabled` with the reason, its pending deliveries end, and new events make none until the
customer enables it again."""
from __future__ import annotations

from services.webhooks.catalog import EVENT_TYPES
from tests.integration.webhooks.deliveries_harness import (
    Receiver,
    response_completed,
    start_service,
    wait_until,
)

DISABLE_AFTER = {"webhook_disable_after_seconds": 0.5}


async def test_an_endpoint_failing_past_the_window_is_disabled_and_can_be_enabled_again(tmp_path):
    service = await start_service(tmp_path, **DISABLE_AFTER)
    receiver, witness = await Receiver(default=500).start(), await Receiver().start()
    try:
        sdk = service.sdk()
        endpoint = await sdk.webhooks.create(name="flaky", url=receiver.url, event_types=list(EVENT_TYPES))
        # a healthy endpoint of the same org: once it has an event, that event's deliveries were all made
        await sdk.webhooks.create(name="witness", url=witness.url, event_types=list(EVENT_TYPES))
        await service.publish(response_completed())
        await service.publish(response_completed())

        async def disabled():
            found = await sdk.webhooks.retrieve(endpoint.id)
            return found if found.status == "disabled" else None

        found = await wait_until(disabled, "the endpoint to be disabled")
        assert "failed" in found.status_reason
        log = await wait_until(lambda: ended(service, endpoint.id), "its deliveries to end")
        assert {d["failure_reason"] for d in log} == {"endpoint_disabled"}
        assert {a["status_code"] for d in log for a in d["attempts"]} == {500}

        await service.publish(response_completed())  # no delivery to a disabled endpoint
        await witness.wait_for(3)
        receiver.default = 200
        await sdk.webhooks.update(endpoint.id, extra_body={"status": "enabled"})
        marker = response_completed()
        await service.publish(marker)
        await wait_until(lambda: delivered_to(receiver), "a delivery after re-enabling")
        page = await service.deliveries(endpoint.id)
        assert [d["status"] for d in page["data"]] == ["delivered", "failed", "failed"]
        assert page["data"][0]["event"]["data"]["id"] == marker.response["id"]
        assert (await sdk.webhooks.retrieve(endpoint.id)).status == "enabled"
    finally:
        await receiver.stop()
        await witness.stop()
        await service.stop()


async def ended(service, endpoint_id: str):
    page = await service.deliveries(endpoint_id)
    return page["data"] if page["data"] and all(d["status"] == "failed" for d in page["data"]) else None


async def delivered_to(receiver: Receiver):
    return [r for r, status in zip(receiver.requests, receiver.statuses, strict=True) if status == 200] or None
