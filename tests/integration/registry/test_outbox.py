"""No lora.* event is lost between the document write and the publish: a change whose publish failed
(or whose process died before it) is published later, once, with the CloudEvents id it was stored with."""
import asyncio
import time
from datetime import UTC, datetime

from services.registry.consumers import on_status_changed
from services.registry.publishing import deletions, lora_event, outbox
from services.registry.sweeper import flush_outboxes
from shared.bus.base import Delivery
from shared.bus.inprocess import InProcessBus
from shared.bus.outbox import GRACE_SECONDS
from shared.contracts import topology as t
from shared.contracts.messages import SEQ_GPU_DONE, ValidationStatusChanged
from tests.fixtures.bus_faults import refuse_once
from tests.integration.registry.conftest import WAIT_SECONDS, start_stack, stop_stack


async def events_until_marker(stack, tap, lora_ref: str) -> list:
    """Every event the tap saw before a fresh PATCH's lora.updated (events arrive in publish order)."""
    resp = await stack.http.patch(f"/v1/loras/{lora_ref}", json={"description": "marker"}, headers=stack.auth())
    assert resp.status == 200
    seen = []
    while (event := (await tap.next()).event).type != "lora.updated" or event.data["lora"]["description"] != "marker":
        seen.append(event)
    return seen


async def test_a_patch_whose_event_was_lost_is_published_once_by_the_sweep_with_its_id(stack, monkeypatch):
    events = await stack.tap_events("org.org-a.lora.#")
    created = await (await stack.create()).json()
    await events.until(lambda e: e.type == "lora.created")
    failed = refuse_once(stack.platform.bus, monkeypatch, "lora.updated")

    resp = await stack.http.patch(f"/v1/loras/{created['id']}", json={"display_name": "Funnier"},
                                  headers=stack.auth())
    assert resp.status == 200 and (await resp.json())["display_name"] == "Funnier"
    assert failed and events.pending() == []
    assert await flush_outboxes(stack.registry, older_than=time.time() + 1) == 1
    assert await flush_outboxes(stack.registry, older_than=time.time() + 1) == 0

    seen = await events_until_marker(stack, events, created["id"])
    assert [(e.type, e.id, e.data["version"]) for e in seen] == [("lora.updated", failed[0].id, 2)]
    assert seen[0].time == failed[0].time and seen[0].data["lora"]["display_name"] == "Funnier"


async def test_a_create_whose_event_was_lost_is_published_at_the_next_start(tmp_path, monkeypatch):
    first = await start_stack(tmp_path)
    failed = refuse_once(first.platform.bus, monkeypatch, "lora.created")
    created = await (await first.create()).json()
    assert failed
    await stop_stack(first)

    published = []
    publish_event = InProcessBus.publish_event

    async def recording(bus, event, **where):
        published.append(event)
        await publish_event(bus, event, **where)

    monkeypatch.setattr(InProcessBus, "publish_event", recording)
    second = await start_stack(tmp_path)
    try:
        key = {"org_id": "org-a", "id": created["id"]}
        async with asyncio.timeout(WAIT_SECONDS):  # a hang guard: the start-up flush publishes, then marks
            while await outbox(second.registry).pending(key):
                await asyncio.sleep(0.01)
        [again] = [e for e in published if e.type == "lora.created"]
        assert again.id == failed[0].id and again.data["lora"]["id"] == created["id"]
        assert await flush_outboxes(second.registry, older_than=time.time() + 1) == 0
    finally:
        await stop_stack(second)


async def test_a_delete_whose_event_was_lost_is_published_once_with_its_id(stack, monkeypatch):
    events = await stack.tap_events("org.org-a.lora.deleted")
    created = await (await stack.create()).json()
    failed = refuse_once(stack.platform.bus, monkeypatch, "lora.deleted")
    assert (await stack.http.delete("/v1/loras/funnier-v1", headers=stack.auth())).status == 200
    assert (await stack.http.get(f"/v1/loras/{created['id']}", headers=stack.auth())).status == 404
    assert failed and events.pending() == []

    assert await flush_outboxes(stack.registry, older_than=time.time() + 1) == 1
    deleted = (await events.next()).event
    assert (deleted.id, deleted.data["lora"]["id"], deleted.data["version"]) == (failed[0].id, created["id"], 2)
    assert await flush_outboxes(stack.registry, older_than=time.time() + 1) == 0


async def test_a_deletion_that_never_happened_is_not_announced(stack):
    events = await stack.tap_events("org.org-a.lora.deleted")
    await stack.create()
    document = await stack.registry.repository.get("org-a", name="funnier-v1")
    # the process wrote the lora.deleted event and died before deleting the document
    entry = lora_event(stack.registry, "deleted", document.model_copy(update={"version": 2}))
    await deletions(stack.registry).prepare([entry], {"org_id": "org-a", "id": document.id})
    await stack.registry.repository.deletions.update_many(
        {}, {"$set": {"prepared_at": time.time() - 2 * GRACE_SECONDS}})

    assert await flush_outboxes(stack.registry, older_than=time.time()) == 0
    assert await stack.registry.repository.deletions.count_documents({}) == 0
    assert (await stack.http.get("/v1/loras/funnier-v1", headers=stack.auth())).status == 200
    assert (await stack.http.delete("/v1/loras/funnier-v1", headers=stack.auth())).status == 200
    assert (await events.next()).event.id != entry["id"] and events.pending() == []


async def test_events_left_in_a_deleted_loras_outbox_go_out_before_its_deletion(stack, monkeypatch):
    events = await stack.tap_events("org.org-a.lora.#")
    failed = refuse_once(stack.platform.bus, monkeypatch, "lora.created")
    created = await (await stack.create()).json()
    assert (await stack.http.delete("/v1/loras/funnier-v1", headers=stack.auth())).status == 200
    assert failed
    assert await flush_outboxes(stack.registry, older_than=time.time() + 1) == 0  # already published
    seen = [(await events.next()).event for _ in range(2)]
    assert [(e.type, e.data["lora"]["id"]) for e in seen] == [("lora.created", created["id"]),
                                                              ("lora.deleted", created["id"])]
    assert seen[0].id == failed[0].id and events.pending() == []


async def test_a_redelivered_status_event_publishes_what_its_first_delivery_stored(stack, monkeypatch):
    events = await stack.tap_events("org.org-a.lora.#")
    validator = await stack.tap_queue(t.VALIDATION_QUEUE)
    created = await (await stack.create()).json()
    await events.until(lambda e: e.type == "lora.created")
    record = created["validations"][0]
    status = ValidationStatusChanged(lora_id=created["id"], org_id="org-a", model=record["model"],
                                     validation_id=record["id"], status="succeeded", seq=SEQ_GPU_DONE,
                                     occurred_at=datetime.fromtimestamp(time.time(), UTC))
    failed_update = refuse_once(stack.platform.bus, monkeypatch, "lora.updated")
    first = Delivery(event=status.to_event("test/worker"), queue=t.REGISTRY_STATUS_QUEUE,
                     routing_key=status.routing_key(), delivery_count=1)
    await on_status_changed(stack.registry, first)  # stored; its events were not published
    assert failed_update and events.pending() == []

    again = Delivery(event=first.event, queue=first.queue, routing_key=first.routing_key, delivery_count=2)
    await on_status_changed(stack.registry, again)
    await on_status_changed(stack.registry, again)
    seen = await events_until_marker(stack, events, created["id"])
    assert [e.type for e in seen] == ["lora.updated", "lora.validation.finished"]
    assert seen[0].id == failed_update[0].id and seen[0].data["version"] == 2
    assert seen[1].data["validation"]["status"] == "succeeded"
    assert (await validator.next()).event.data["validation_id"] == record["id"]
