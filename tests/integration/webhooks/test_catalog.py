"""Which webhook event each public bus event becomes, read the way a customer's receiver reads it: through the
official openai SDK's event types."""
from __future__ import annotations

import json

import pytest
from openai._models import construct_type
from openai.types.webhooks import (
    ResponseCompletedWebhookEvent,
    ResponseFailedWebhookEvent,
)
from openai.types.webhooks.unwrap_webhook_event import UnwrapWebhookEvent

from services.webhooks.catalog import EVENT_TYPES, webhook_event
from services.webhooks.event_types import EVENT_TYPES as SUBSCRIBABLE
from tests.integration.webhooks.deliveries_harness import (
    lora_deleted,
    response_completed,
    response_failed,
    validation_finished,
)


def as_received(message):
    event = webhook_event(message.to_event("loraserve/test"))
    return event, json.loads(event.body)


def test_every_type_the_service_emits_is_one_a_customer_can_subscribe_to():
    assert set(EVENT_TYPES) == set(SUBSCRIBABLE)


@pytest.mark.parametrize("status", ["succeeded", "failed", "unverified"])
def test_a_finished_validation_becomes_the_type_of_its_outcome(status):
    message = validation_finished(status=status, code=None if status == "succeeded" else "rank_too_large")
    event, body = as_received(message)
    assert body["type"] == event.type == f"lora.validation.{status}"
    assert body["object"] == "event" and body["id"].startswith("evt_")
    data = body["data"]
    assert (data["id"], data["name"], data["model"], data["status"]) == (
        message.lora["id"], message.lora["name"], message.validation["model"], status)
    assert data["result_code"] == message.validation["result_code"]
    assert data["result_message"] == message.validation["result_message"]


def test_a_validation_still_running_is_no_webhook_event():
    message = validation_finished(status="running", code=None)
    assert webhook_event(message.to_event("loraserve/test")) is None


def test_a_response_outcome_parses_as_the_sdks_event_with_what_a_receiver_acts_on():
    message = response_completed()
    _, body = as_received(message)
    parsed = construct_type(type_=UnwrapWebhookEvent, value=body)
    assert isinstance(parsed, ResponseCompletedWebhookEvent)
    assert parsed.type == "response.completed" and parsed.object == "event"
    assert parsed.data.id == message.response["id"]
    assert (body["data"]["status"], body["data"]["model"]) == ("completed", message.response["model"])
    assert body["data"]["usage"] == message.response["usage"]


def test_a_failed_response_carries_its_error_code():
    message = response_failed()
    _, body = as_received(message)
    parsed = construct_type(type_=UnwrapWebhookEvent, value=body)
    assert isinstance(parsed, ResponseFailedWebhookEvent)
    assert body["data"]["result_code"] == message.response["error"]["code"]
    assert body["data"]["error"] == message.response["error"]


def test_a_deleted_lora_names_it():
    message = lora_deleted()
    event, body = as_received(message)
    assert event.type == "lora.deleted" and event.org_id == "org-a"
    assert (body["data"]["id"], body["data"]["name"], body["data"]["deleted"]) == (
        message.lora["id"], message.lora["name"], True)


def test_the_same_bus_event_always_gives_the_same_event_and_bytes():
    cloud_event = response_completed().to_event("loraserve/test")
    again = cloud_event.model_copy()
    assert webhook_event(cloud_event) == webhook_event(again)
    other = response_completed().to_event("loraserve/test")
    assert webhook_event(other).id != webhook_event(cloud_event).id


def test_an_event_without_its_object_is_refused():
    cloud_event = response_completed().to_event("loraserve/test")
    cloud_event.data.pop("response")
    with pytest.raises(ValueError):
        webhook_event(cloud_event)
