"""The webhook event types a customer may subscribe to, with what each means (GET /v1/webhook_event_types)."""
from __future__ import annotations

EVENT_TYPES: dict[str, str] = {
    "lora.validation.succeeded": "A LoRA passed validation on a model and can be served with it.",
    "lora.validation.failed": "A LoRA failed validation on a model; result_code says why.",
    "lora.validation.unverified": "A LoRA's validation on a model could not run to the end (no worker pool, "
                                  "a job that kept failing); requests with it are not refused.",
    "lora.deleted": "A LoRA was deleted.",
    "response.completed": "A background response completed.",
    "response.failed": "A background response failed.",
    "response.cancelled": "A background response was cancelled.",
    "response.incomplete": "A background response ended incomplete (e.g. max_output_tokens reached).",
}


def unknown_event_types(event_types: list[str]) -> list[str]:
    return [t for t in event_types if t not in EVENT_TYPES]


def sample_data(event_type: str) -> dict:
    """The `data` of a test delivery: the shape of a real one, with ids that name no object."""
    if event_type.startswith("lora.validation."):
        status = event_type.rsplit(".", 1)[1]
        return {"id": "00000000-0000-4000-8000-000000000000", "name": "webhook-test", "model": "loraserve/test",
                "status": status, "result_code": None, "test": True}
    if event_type.startswith("lora."):
        return {"id": "00000000-0000-4000-8000-000000000000", "name": "webhook-test", "test": True}
    return {"id": "resp_webhook_test", "status": event_type.rsplit(".", 1)[1], "model": "loraserve/test",
            "test": True}
