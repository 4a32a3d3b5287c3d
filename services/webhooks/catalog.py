"""Which webhook event a public bus event becomes, and its body as the openai SDK's event types define it.

A body is `{id, object: "event", type, created_at, data}`. For `response.*` the SDK's `data` holds the response
`id`; we add what a receiver needs to act without calling back (status, model, error, usage, metadata). For our
`lora.*` types `data` holds the LoRA's id and name and, for a validation, its model, status and result.
The event `id` is derived from the CloudEvents id, which the publishers' outboxes keep across re-publishes, so a
redelivered or re-published bus event maps to the same webhook event (and the same deliveries).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from shared.contracts.cloudevents import CloudEvent
from shared.contracts.messages import RESPONSE_OUTCOMES, LoraDeleted, LoraValidationFinished

VALIDATION_OUTCOMES = ("succeeded", "failed", "unverified")
EVENT_TYPES: tuple[str, ...] = (
    *(f"lora.validation.{status}" for status in VALIDATION_OUTCOMES),
    LoraDeleted.TYPE,
    *(m.TYPE for m in RESPONSE_OUTCOMES.values()),
)
# the bus events the webhooks service consumes (routing keys are org.<org>.<type>)
BUS_TYPES: tuple[str, ...] = (LoraValidationFinished.TYPE, LoraDeleted.TYPE,
                              *(m.TYPE for m in RESPONSE_OUTCOMES.values()))
EVENT_ID_PREFIX = "evt_"


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    org_id: str
    created_at: int
    body: bytes  # what every attempt of every delivery of this event sends, byte for byte


def event_id(cloud_event_id: str) -> str:
    return EVENT_ID_PREFIX + hashlib.sha256(cloud_event_id.encode()).hexdigest()[:32]


def webhook_event(event: CloudEvent) -> WebhookEvent | None:
    """The webhook event for a public bus event; None for one no webhook type covers (e.g. a validation that
    has not reached an outcome). Raises ValueError when the event's data lacks what its type promises."""
    mapped = _type_and_data(event)
    if mapped is None:
        return None
    kind, data = mapped
    org_id = event.data.get("org_id")
    if not isinstance(org_id, str) or not org_id:
        raise ValueError(f"{event.type} event {event.id} has no org_id")
    created_at = int(event.time.timestamp())
    body = {"id": event_id(event.id), "object": "event", "type": kind, "created_at": created_at, "data": data}
    return WebhookEvent(id=body["id"], type=kind, org_id=org_id, created_at=created_at, body=_encode(body))


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _type_and_data(event: CloudEvent) -> tuple[str, dict[str, Any]] | None:
    if event.type == LoraValidationFinished.TYPE:
        return _validation(event.data)
    if event.type == LoraDeleted.TYPE:
        return LoraDeleted.TYPE, _lora_deleted(_object(event.data, "lora"))
    if event.type.removeprefix("response.") in RESPONSE_OUTCOMES:
        return event.type, _response(_object(event.data, "response"))
    return None


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict) or not value.get("id"):
        raise ValueError(f"event data has no {key} object with an id")
    return value


def _validation(data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    lora, record = _object(data, "lora"), _object(data, "validation")
    status = record.get("status")
    if status not in VALIDATION_OUTCOMES:
        return None
    return f"lora.validation.{status}", {
        "id": lora["id"],
        "name": lora.get("name"),
        "model": record.get("model"),
        "status": status,
        "result_code": record.get("result_code"),
        "result_message": record.get("result_message"),
        "validation_id": record["id"],
        "response_id": record.get("response_id"),
        "lora_status": lora.get("status"),  # the LoRA's overall status after this outcome
        "finished_at": record.get("finished_at"),
    }


def _lora_deleted(lora: dict[str, Any]) -> dict[str, Any]:
    return {"id": lora["id"], "name": lora.get("name"), "supported_models": lora.get("supported_models", []),
            "deleted": True}


def _response(response: dict[str, Any]) -> dict[str, Any]:
    error = response.get("error")
    return {
        "id": response["id"],
        "status": response.get("status"),
        "model": response.get("model"),
        "error": error,
        "result_code": error.get("code") if isinstance(error, dict) else None,
        "incomplete_details": response.get("incomplete_details"),
        "usage": response.get("usage"),
        "metadata": response.get("metadata") or {},
        "completed_at": response.get("completed_at"),
    }
