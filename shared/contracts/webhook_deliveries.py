"""The delivery log of a webhook endpoint (GET /v1/webhook_endpoints/{id}/deliveries): each delivery of an
event to the endpoint, every attempt with the receiver's status code (or why none came back) and latency, and
when the next retry is due. Paginated like the SDK's cursor lists (`after`, `limit`, `has_more`)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.contracts.common import ListEnvelope

DeliveryStatus = Literal["pending", "delivered", "failed"]


class WebhookDeliveryAttempt(BaseModel):
    attempted_at: int
    status_code: int | None = Field(None, description="What the receiver answered; null when nothing came back.")
    error: str | None = Field(None, description="Why no answer came back (timeout, connection error, a "
                                                "refused address).")
    latency_ms: float
    blocked: bool = Field(False, description="The URL or its address was refused: nothing was connected.")


class WebhookDelivery(BaseModel):
    id: str
    object: Literal["webhook_delivery"] = "webhook_delivery"
    webhook_endpoint_id: str
    event_id: str
    event_type: str
    webhook_id: str = Field(description="The `webhook-id` header of every attempt (receivers de-duplicate on it).")
    status: DeliveryStatus
    failure_reason: str | None = Field(None, description="`retries_exhausted`, `endpoint_disabled` or "
                                                         "`endpoint_deleted` when the delivery failed.")
    created_at: int
    delivered_at: int | None = None
    next_attempt_at: int | None = Field(None, description="When the next attempt is due, while pending.")
    attempt_count: int
    attempts: list[WebhookDeliveryAttempt]
    event: dict[str, Any] = Field(description="The event body every attempt sends.")


class WebhookDeliveryList(ListEnvelope[WebhookDelivery]):
    pass


class WebhookDeliveryListQuery(BaseModel):
    after: str | None = Field(None, max_length=64, description="The last delivery id of the previous page.")
    limit: int = Field(20, ge=1, le=100)
