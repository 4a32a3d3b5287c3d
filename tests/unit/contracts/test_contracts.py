"""Contracts round-trip through JSON, and the topology is self-consistent."""
import pytest

from shared.contracts import topology as t
from shared.contracts.cloudevents import CloudEvent
from shared.contracts.errors import ApiError, Conflict, NotFound
from shared.contracts.messages import (
    MESSAGE_TYPES,
    AdapterRef,
    ChatMessage,
    GenerateResponse,
    ValidateAdapter,
    ValidationStatusChanged,
)

ADAPTER = AdapterRef(lora_id="l1", name="funnier-v1", config_file_id="file-a", weights_file_id="file-b",
                     config_object_key="orgs/o/files/file-a", weights_object_key="orgs/o/files/file-b")


def test_job_round_trips_through_a_cloudevent():
    job = ValidateAdapter(validation_id="v1", org_id="acme", model="loraserve/kimi-k2-tiny",
                          model_slug="kimi-k2-tiny", response_id="resp_1", adapter=ADAPTER)
    event = job.to_event("test", correlation_id="req_1")
    again = CloudEvent.from_bytes(event.to_bytes())
    assert again.specversion == "1.0" and again.type == "loraserve.validation.validate"
    assert again.correlationid == "req_1" and again.subject == "v1"
    assert ValidateAdapter.from_event(again) == job
    assert job.routing_key() == "validate.kimi-k2-tiny"


def test_event_routing_key_carries_the_org():
    event = ValidationStatusChanged(lora_id="l", org_id="acme", model="m", validation_id="v",
                                    status="running", seq=1)
    assert event.routing_key() == "org.acme.validation.status.changed"


def test_message_of_the_wrong_type_is_refused():
    event = GenerateResponse(response_id="resp_1", org_id="o", model="m", model_slug="s",
                             messages=[ChatMessage(role="user", content="hi")]).to_event("t")
    with pytest.raises(ValueError):
        ValidateAdapter.from_event(event)


def test_every_message_type_is_registered_once():
    assert all(cls.TYPE == name for name, cls in MESSAGE_TYPES.items())


def test_oversized_message_is_refused():
    with pytest.raises(ValueError):
        CloudEvent.from_bytes(b" " * (8 * 1024 * 1024 + 1))


def test_topology_binds_every_model_and_dead_letters_every_queue():
    topo = t.topology(["a", "b"])
    validator = topo.queue(t.VALIDATION_QUEUE)
    assert set(validator.bindings) == {(t.COMMANDS, "validate.a"), (t.COMMANDS, "validate.b")}
    assert validator.arguments()["x-queue-type"] == "quorum" and validator.arguments()["x-delivery-limit"] > 0
    inference = topo.queue(t.inference_queue("a"))
    assert inference.arguments()["x-queue-type"] == "classic" and inference.arguments()["x-max-priority"] == 10
    assert "x-delivery-limit" not in inference.arguments()
    for queue in topo.queues:
        assert topo.queue(queue.dlq_name).bindings == ((t.DEAD_LETTERS, queue.name),)


def test_error_envelopes_have_both_shapes():
    error = NotFound("No LoRA named x", param="name", code="lora_not_found")
    assert error.openai() == {"error": {"message": "No LoRA named x", "type": "not_found_error",
                                        "param": "name", "code": "lora_not_found"}}
    assert error.anthropic() == {"type": "error", "error": {"type": "not_found_error", "message": "No LoRA named x"}}
    assert Conflict("dup").headers["x-should-retry"] == "false"
    assert ApiError("x", status=429).anthropic()["error"]["type"] == "rate_limit_error"


def test_committed_asyncapi_document_matches_the_models():
    from pathlib import Path

    from shared.contracts import asyncapi

    committed = Path(asyncapi.__file__).with_name("asyncapi.yaml").read_text()
    assert committed == asyncapi.render(), "run: python -m shared.contracts.asyncapi > shared/contracts/asyncapi.yaml"
    channels = asyncapi.document()["channels"]
    assert "org.{org_id}.lora.created" in channels and "org.{org_id}.file.deleted" in channels
    for status in ("completed", "failed", "cancelled", "incomplete"):
        payload = channels[f"org.{{org_id}}.response.{status}"]["subscribe"]["message"]["payload"]
        assert payload["required"] == ["org_id", "response"]
