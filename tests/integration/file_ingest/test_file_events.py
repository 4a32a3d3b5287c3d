"""file.created and file.deleted are announced once per change, with the File object; a change whose
publish failed (or whose process died before it) is announced later with the same CloudEvents id."""
from __future__ import annotations

import io
import time

from services.file_ingest.events import flush_file_events
from shared.bus.base import BusError
from shared.contracts import topology as t
from tests.fixtures.inbox import Inbox


async def file_events(svc) -> Inbox:
    inbox = Inbox()
    await svc.platform.bus.subscribe(t.EVENTS, ["org.org-a.file.#"], inbox)
    return inbox


async def until_marker(svc, inbox: Inbox) -> list:
    """The events before a fresh file's file.created (events arrive in publish order)."""
    marker = await svc.sdk().files.create(file=("marker.json", io.BytesIO(b"{}")), purpose="lora")
    seen = []
    while (event := (await inbox.next()).event).subject != marker.id:
        seen.append(event)
    return seen


async def test_a_file_created_and_deleted_is_announced_with_the_file_object(svc):
    inbox = await file_events(svc)
    created = await svc.sdk().files.create(file=("adapter_config.json", io.BytesIO(b"{}")), purpose="lora")
    event = (await inbox.next()).event
    assert (event.type, event.data["org_id"]) == ("file.created", "org-a")
    assert event.data["file"] == created.model_dump(mode="json", exclude_unset=True)
    await svc.sdk().files.delete(created.id)
    event = (await inbox.next()).event
    assert (event.type, event.data["file"]["id"]) == ("file.deleted", created.id)


async def test_a_completed_upload_is_announced_once_however_often_it_is_completed(svc):
    inbox = await file_events(svc)
    client = svc.sdk()
    upload = await client.uploads.create(bytes=3, filename="w.bin", mime_type="application/octet-stream",
                                         purpose="lora")
    part = await client.uploads.parts.create(upload_id=upload.id, data=b"abc")
    done = await client.uploads.complete(upload.id, part_ids=[part.id])
    again = await client.uploads.complete(upload.id, part_ids=[part.id])
    assert again.file.id == done.file.id
    seen = await until_marker(svc, inbox)
    assert [(e.type, e.subject) for e in seen] == [("file.created", done.file.id)]
    assert seen[0].data["file"]["bytes"] == 3


async def test_events_stored_during_a_bus_outage_go_out_once_after_it_with_their_ids(svc, monkeypatch):
    inbox = await file_events(svc)
    refused, publish_event = {}, svc.platform.bus.publish_event

    async def bus_down(event, **where):
        refused[event.id] = event
        raise BusError("broker unavailable")

    monkeypatch.setattr(svc.platform.bus, "publish_event", bus_down)
    client = svc.sdk()
    created = await client.files.create(file=("adapter_config.json", io.BytesIO(b"{}")), purpose="lora")
    await client.files.delete(created.id)
    upload = await client.uploads.create(bytes=2, filename="w.bin", mime_type="application/octet-stream",
                                         purpose="lora")
    part = await client.uploads.parts.create(upload_id=upload.id, data=b"ab")
    done = await client.uploads.complete(upload.id, part_ids=[part.id])
    monkeypatch.setattr(svc.platform.bus, "publish_event", publish_event)

    assert await flush_file_events(svc.ctx, older_than=time.time() + 1) == 3
    assert await flush_file_events(svc.ctx, older_than=time.time() + 1) == 0
    seen = await until_marker(svc, inbox)
    assert len(seen) == 3 and {e.id for e in refused.values()} <= {e.id for e in seen}
    by_file = [(e.type, e.subject) for e in seen if e.subject == created.id]
    assert by_file == [("file.created", created.id), ("file.deleted", created.id)]
    assert [(e.type, e.subject) for e in seen if e.subject != created.id] == [("file.created", done.file.id)]
