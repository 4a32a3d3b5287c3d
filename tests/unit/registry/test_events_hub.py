"""The SSE fan-out: an org's streams get that org's public events of the asked types, nothing else."""
import pytest

from services.registry.events_hub import MAX_QUEUED_PER_STREAM, EventsHub, binding_keys, matching_types
from services.registry.handlers.events import frame, requested_types
from shared.bus.base import Delivery
from shared.contracts.cloudevents import CloudEvent
from shared.contracts.errors import BadRequest


def delivery(org: str, event_type: str) -> Delivery:
    return Delivery(event=CloudEvent(source="t", type=event_type, data={"org_id": org}), queue="sub",
                    routing_key=f"org.{org}.{event_type}", delivery_count=1)


def drain(stream):
    out = []
    while not stream.queue.empty():
        out.append(stream.queue.get_nowait())
    return out


def test_binds_every_org_public_families_once():
    assert binding_keys() == ["org.*.lora.#", "org.*.file.#"]


async def test_each_stream_gets_only_its_org_and_types():
    hub = EventsHub()
    acme_all = hub.open("acme", matching_types(["*"]))
    acme_lora = hub.open("acme", matching_types(["lora.*"]))
    other = hub.open("other", matching_types(["*"]))
    for d in (delivery("acme", "lora.created"), delivery("acme", "file.created"),
              delivery("other", "lora.deleted"), delivery("acme", "validation.status.changed")):
        await hub.on_delivery(d)
    assert [e.type for e in drain(acme_all)] == ["lora.created", "file.created"]
    assert [e.type for e in drain(acme_lora)] == ["lora.created"]
    assert [e.type for e in drain(other)] == ["lora.deleted"]


async def test_a_closed_stream_gets_nothing_more():
    hub = EventsHub()
    stream = hub.open("acme", matching_types(["*"]))
    hub.close(stream)
    await hub.on_delivery(delivery("acme", "lora.created"))
    assert drain(stream) == [] and hub.open_streams() == 0


async def test_a_stream_that_falls_behind_is_ended_not_buffered_forever():
    hub = EventsHub()
    stream = hub.open("acme", matching_types(["*"]))
    for _ in range(MAX_QUEUED_PER_STREAM + 1):
        await hub.on_delivery(delivery("acme", "lora.updated"))
    assert stream.ended and await stream.next() is None


def test_type_filters_are_globs_over_the_public_types():
    assert requested_types("lora.*") == {"lora.created", "lora.updated", "lora.deleted", "lora.validation.finished"}
    assert requested_types("file.created, lora.deleted") == {"file.created", "lora.deleted"}
    assert len(requested_types(None)) == 6
    with pytest.raises(BadRequest) as caught:
        requested_types("response.*")
    assert caught.value.param == "types"


def test_a_frame_is_one_sse_event_named_by_type():
    event = CloudEvent(source="t", type="lora.created", data={"a": 1})
    text = frame(event).decode()
    assert text.startswith(f"id: {event.id}\nevent: lora.created\ndata: {{") and text.endswith("}\n\n")
    assert CloudEvent.model_validate_json(text.split("data: ", 1)[1]) == event
