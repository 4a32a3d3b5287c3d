"""Publishing a prepared event from an outbox, on both buses: a re-publish is the same CloudEvent."""

from __future__ import annotations

from mongomock_motor import AsyncMongoMockClient

from shared.bus.base import BusError
from shared.bus.outbox import FIELD, DocumentOutbox, outbox_entry, publish_entry
from shared.contracts import topology as t
from tests.integration.bus.conftest import Inbox
from tests.integration.bus.messages import SOURCE, file_created


async def test_a_prepared_event_published_twice_keeps_its_id_time_and_correlation(harness):
    bus = await harness.bus()
    inbox = Inbox()
    await bus.subscribe(t.EVENTS, ["org.org-a.file.#"], inbox)
    entry = outbox_entry(file_created("org-a", "file-1"), source=SOURCE, correlation_id="req-1")

    await publish_entry(bus, entry)
    await publish_entry(bus, entry)

    first, again = await inbox.take(2)
    assert first.event.id == again.event.id == entry["id"]
    assert first.event.time == again.event.time
    assert first.event.correlationid == again.event.correlationid == "req-1"
    assert first.routing_key == "org.org-a.file.created"
    assert again.event.data == {"org_id": "org-a", "file": {"id": "file-1", "object": "file"}}


async def test_an_entry_leaves_the_outbox_only_once_published(harness, monkeypatch):
    bus = await harness.bus()
    inbox = Inbox()
    await bus.subscribe(t.EVENTS, ["org.org-a.file.#"], inbox)
    collection = AsyncMongoMockClient()["outbox_test"]["things"]
    outbox = DocumentOutbox(collection, bus)
    entries = [outbox_entry(file_created("org-a", f"file-{n}"), source=SOURCE, now=100.0) for n in (1, 2)]
    await collection.insert_one({"id": "thing-1", FIELD: entries})
    publish_event = bus.publish_event

    async def fails_on_the_second(event, **where):
        if event.id == entries[1]["id"]:
            raise BusError("broker unavailable")
        await publish_event(event, **where)

    monkeypatch.setattr(bus, "publish_event", fails_on_the_second)
    assert await outbox.deliver({"id": "thing-1"}, entries) is False
    assert [e["id"] for e in await outbox.pending({"id": "thing-1"})] == [entries[1]["id"]]
    assert await outbox.flush(older_than=100.0) == 0  # younger than the cut-off: left to its writer

    monkeypatch.setattr(bus, "publish_event", publish_event)
    assert await outbox.flush(older_than=101.0) == 1
    assert await outbox.pending({"id": "thing-1"}) == []
    assert [d.event.id for d in await inbox.take(2)] == [e["id"] for e in entries]
    assert await outbox.flush(older_than=101.0) == 0
