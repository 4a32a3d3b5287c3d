"""The webhook-endpoints API's wire shapes, as the official openai SDK (3.57) sends and reads them
(`openai/types/webhooks/`): the endpoint object (with its secret only at create and rotate), the bodies, the list
pages, the test result and the event-type list. `status`/`status_reason` are ours: an endpoint that kept failing
is `disabled` (the SDK keeps fields it does not declare)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.common import ListEnvelope

MAX_NAME = 256
MAX_URL = 2048
MAX_EVENT_TYPE = 128
MAX_EVENT_TYPES = 32
EndpointStatus = Literal["enabled", "disabled"]


class WebhookEndpoint(BaseModel):
    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    name: str
    url: str
    event_types: list[str]
    signing_secret_hint: str | None = None
    status: EndpointStatus = "enabled"
    status_reason: str | None = Field(None, description="Why the endpoint was disabled, when it was.")
    created_at: int
    updated_at: int | None = None


class WebhookEndpointWithSecret(WebhookEndpoint):
    signing_secret: str = Field(description="`whsec_…`: returned only by create and rotate_secret.")


class WebhookEndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_NAME)
    url: str = Field(min_length=1, max_length=MAX_URL)
    event_types: list[str] = Field(min_length=1, max_length=MAX_EVENT_TYPES)


class WebhookEndpointUpdate(BaseModel):
    """Fields left out stay as they are; `event_types` replaces the whole set. `status: enabled` re-enables an
    endpoint that was disabled after failing deliveries."""
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=MAX_NAME)
    url: str | None = Field(None, min_length=1, max_length=MAX_URL)
    event_types: list[str] | None = Field(None, min_length=1, max_length=MAX_EVENT_TYPES)
    status: EndpointStatus | None = None


class WebhookRotateSecret(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep_old_secret_active_for_24_hours: bool = Field(
        False, description="Keep signing with the previous secret too for 24 hours (deliveries carry both "
                           "signatures); false retires it at once.")


class WebhookTest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_type: str = Field(min_length=1, max_length=MAX_EVENT_TYPE)


class WebhookEndpointTestResult(BaseModel):
    object: Literal["webhook_endpoint.test"] = "webhook_endpoint.test"
    webhook_endpoint_id: str
    event_type: str
    status_code: int = Field(description="What the receiver answered (a redirect is not followed).")
    success: Literal[True] = True


class DeletedWebhookEndpoint(BaseModel):
    id: str
    object: Literal["webhook_endpoint.deleted"] = "webhook_endpoint.deleted"
    deleted: bool = True


class WebhookEndpointList(ListEnvelope[WebhookEndpoint]):
    pass


class WebhookEndpointListQuery(BaseModel):
    after: str | None = Field(None, max_length=64, description="The last endpoint id of the previous page.")
    limit: int = Field(20, ge=1, le=100)


class WebhookEventTypeList(BaseModel):
    object: Literal["list"] = "list"
    data: list[str]
    descriptions: dict[str, str] = Field(default_factory=dict, description="What each event type means.")
