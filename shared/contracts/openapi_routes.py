"""The public /v1 API's route table for the OpenAPI document: each operation's method, path, models,
error statuses and streams, plus the wire shapes that exist only as lists, query strings or forms.

A test keeps this table equal to the routes the embedded app serves.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.contracts import files as f
from shared.contracts import inference as inf
from shared.contracts import loras as lo
from shared.contracts import usage as us
from shared.contracts import webhook_deliveries as wd
from shared.contracts import webhooks as wh
from shared.contracts.common import ListEnvelope, ListParams

API_VERSION = "1.0.0"
REF = "#/components/schemas/{model}"


def ref_of(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


SECURITY = [{"bearerAuth": []}, {"apiKeyAuth": []}]
ERROR_TEXT = {
    400: "The request is invalid; `error.param` names the first offending parameter.",
    401: "No API key, or an unknown or revoked one.",
    403: "A quota of the organization is used up (`error.code` `quota_exceeded`, `error.param` names it).",
    404: "No such object in the caller's organization (another organization's objects are 404 too).",
    409: "The request conflicts with the object's current state.",
    413: "The request body is over the size limit.",
    415: "The request body has the wrong content type.",
    416: "The requested byte range is outside the file.",
    429: "A rate limit was reached: `retry-after` / `retry-after-ms` say when to retry; `error.type` names the "
         "limit (`requests` or `tokens`) and the x-ratelimit-* headers its state.",
    503: "A dependency is unavailable right now; retry.",
    504: "No worker answered before the request's deadline.",
}


# -- wire shapes that exist only as lists, query strings or forms ------------------------
class FileList(ListEnvelope[f.FileObject]):
    pass


class LoraList(ListEnvelope[lo.Lora]):
    pass


class ModelList(ListEnvelope[inf.ModelObject]):
    pass


class FileListQuery(ListParams):
    purpose: str | None = Field(None, max_length=64, description="Only files with this purpose.")


class EventsQuery(BaseModel):
    types: str | None = Field(None, description="Comma-separated globs over the public event types, e.g. "
                                                "`lora.*,file.created` (at most 16); all types when absent.")
    after: int | None = Field(None, ge=0, description="Replay the organization's events after this event id (an "
                                                     "`id:` of this stream; 0: every event still kept), then "
                                                     "follow new ones. A `Last-Event-ID` header wins over it.")
    since: float | None = Field(None, ge=0, description="Replay from the first event logged at or after this "
                                                       "time (unix seconds), then follow new ones.")


class FileUploadForm(BaseModel):
    file: bytes = Field(description="The file's bytes (a multipart file field with a filename).")
    purpose: f.FilePurpose = Field(description="`lora` for adapter files.")


class UploadPartForm(BaseModel):
    data: bytes = Field(description="The part's bytes (at most 64 MiB).")


# -- the route table ---------------------------------------------------------------------
@dataclass(frozen=True)
class Stream:
    """An operation's Server-Sent Events: what each event's `data:` holds (JSON unless `done` ends it)."""

    description: str
    data: dict[str, Any]
    done: str | None = None


TYPED_EVENT = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
CHAT_STREAM = Stream("`ChatCompletionChunk`s, then `data: [DONE]`; a failure after the start is one OpenAI "
                     "error object", {"anyOf": [ref_of("ChatCompletionChunk"), ref_of("OpenAIError")]},
                     done="[DONE]")
RESPONSES_STREAM = Stream("Responses stream events, `response.created` first and `response.completed` (or "
                          "`response.failed`) last", TYPED_EVENT)
MESSAGES_STREAM = Stream("Anthropic stream events named on their `event:` line, `message_start` first and "
                         "`message_stop` last; a failure is an `error` event", TYPED_EVENT)
EVENTS_STREAM = Stream("The org's public events from its event log: `id:` the event's id in the log (increasing, "
                       "for `Last-Event-ID` and `after`), `event:` its type, `data:` the CloudEvent; a first frame "
                       "with only `id:` (where the stream starts); comments as heartbeats. A start the log cannot "
                       "serve (`events_expired`, `event_id_unknown`) is one `event: error` frame, an OpenAI "
                       "error object whose `id:` is where to resume, and the end of the stream",
                       {"anyOf": [ref_of("CloudEvent"), ref_of("OpenAIError")]})


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    response: type[BaseModel] | None
    body: type[BaseModel] | None = None
    body_kind: Literal["json", "multipart"] = "json"
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    stream: Stream | None = None
    extra_responses: dict[str, Any] = field(default_factory=dict)
    anthropic: bool = False


PATH_PARAMS = {
    "file_id": "A File id (`file-…`).", "upload_id": "An Upload id (`upload_…`).",
    "ref": "A LoRA's name or its UUID.", "response_id": "A Response id (`resp_…`).",
    "model_id": "A catalogue model id; it contains a `/` (e.g. `moonshotai/Kimi-K2.6`), sent as is.",
    "endpoint_id": "A webhook endpoint id (`whep_…`).",
}
BODY_ERRORS = (400, 413, 415)
CONTENT_RESPONSES = {
    "200": {"description": "The whole file.", "content": {"application/octet-stream": {
        "schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}},
    "206": {"description": "The requested byte range.", "content": {"application/octet-stream": {
        "schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}},
}
OPERATIONS: tuple[Operation, ...] = (
    Operation("post", "/v1/files", "createFile", "Upload a file (multipart, streamed to storage)", "Files",
              f.FileObject, FileUploadForm, "multipart", errors=(*BODY_ERRORS, 403)),
    Operation("get", "/v1/files", "listFiles", "List the organization's files", "Files", FileList,
              query=FileListQuery, errors=(400,)),
    Operation("get", "/v1/files/{file_id}", "retrieveFile", "Retrieve a file", "Files", f.FileObject,
              errors=(404,)),
    Operation("get", "/v1/files/{file_id}/content", "downloadFile", "Download a file's bytes (Range supported)",
              "Files", None, errors=(404, 416), extra_responses=CONTENT_RESPONSES),
    Operation("delete", "/v1/files/{file_id}", "deleteFile", "Delete a file no LoRA uses", "Files",
              f.FileDeletedObject, errors=(404, 409)),
    Operation("post", "/v1/uploads", "createUpload", "Start a multipart upload", "Uploads", f.UploadObject,
              f.CreateUploadBody, errors=(*BODY_ERRORS, 403)),
    Operation("post", "/v1/uploads/{upload_id}/parts", "addUploadPart", "Add a part to an upload", "Uploads",
              f.UploadPartObject, UploadPartForm, "multipart", errors=(*BODY_ERRORS, 404, 409)),
    Operation("post", "/v1/uploads/{upload_id}/complete", "completeUpload",
              "Complete an upload: its parts, in the order given, become one File", "Uploads", f.UploadObject,
              f.CompleteUploadBody, errors=(*BODY_ERRORS, 404, 409)),
    Operation("post", "/v1/uploads/{upload_id}/cancel", "cancelUpload", "Cancel an upload", "Uploads",
              f.UploadObject, errors=(404, 409)),
    Operation("post", "/v1/loras", "createLora", "Create a LoRA from two uploaded files; validation starts",
              "LoRAs", lo.Lora, lo.LoraCreate, errors=(*BODY_ERRORS, 403, 409, 503)),
    Operation("get", "/v1/loras", "listLoras", "List the organization's LoRAs", "LoRAs", LoraList,
              query=ListParams, errors=(400,)),
    Operation("get", "/v1/loras/{ref}", "retrieveLora", "Retrieve a LoRA by name or UUID", "LoRAs", lo.Lora,
              errors=(404,)),
    Operation("patch", "/v1/loras/{ref}", "updateLora",
              "Update a LoRA; models added to supported_models are validated", "LoRAs", lo.Lora, lo.LoraPatch,
              errors=(*BODY_ERRORS, 403, 404, 409, 503)),
    Operation("delete", "/v1/loras/{ref}", "deleteLora", "Delete a LoRA", "LoRAs", lo.LoraDeletedResponse,
              errors=(404,)),
    Operation("get", "/v1/events", "streamEvents", "Follow the organization's public events (SSE)", "Events",
              None, query=EventsQuery, errors=(400, 503), stream=EVENTS_STREAM),
    Operation("post", "/v1/chat/completions", "createChatCompletion",
              "OpenAI Chat Completions; `metadata.lora` names a LoRA", "Inference", inf.ChatCompletion,
              inf.ChatCompletionRequest, errors=(*BODY_ERRORS, 404, 503, 504),
              stream=CHAT_STREAM),
    Operation("post", "/v1/responses", "createResponse",
              "OpenAI Responses (sync, streamed or background); `metadata.lora` names a LoRA", "Inference",
              inf.ResponseObject, inf.ResponseCreateRequest, errors=(*BODY_ERRORS, 404, 503, 504),
              stream=RESPONSES_STREAM),
    Operation("get", "/v1/responses/{response_id}", "retrieveResponse", "Retrieve a stored response",
              "Inference", inf.ResponseObject, errors=(404,)),
    Operation("post", "/v1/responses/{response_id}/cancel", "cancelResponse", "Cancel a background response",
              "Inference", inf.ResponseObject, errors=(400, 404, 503)),
    Operation("post", "/v1/messages", "createMessage",
              "Anthropic Messages; `metadata.lora` names a LoRA; errors in Anthropic's envelope", "Inference",
              inf.AnthropicMessage, inf.MessagesRequest, errors=(*BODY_ERRORS, 404, 503, 504),
              stream=MESSAGES_STREAM, anthropic=True),
    Operation("get", "/v1/models", "listModels", "List the catalogue's models", "Models", ModelList),
    Operation("get", "/v1/models/{model_id}", "retrieveModel", "Retrieve a model with its LoRA limits",
              "Models", inf.ModelObject, errors=(404,)),
    Operation("get", "/v1/organization/usage/completions", "usageCompletions",
              "The organization's completions usage in time buckets, by model, API key and LoRA (OpenAI's "
              "shape; arrays as `group_by=a&group_by=b`, `group_by[]=a` or `group_by=a,b`)", "Usage",
              us.UsagePage, query=us.UsageQuery, errors=(400,)),
    Operation("post", "/v1/webhook_endpoints", "createWebhookEndpoint",
              "Create a webhook endpoint; its signing secret is in this answer only", "Webhooks",
              wh.WebhookEndpointWithSecret, wh.WebhookEndpointCreate, errors=(*BODY_ERRORS, 403)),
    Operation("get", "/v1/webhook_endpoints", "listWebhookEndpoints", "List the organization's webhook endpoints, "
              "newest first", "Webhooks", wh.WebhookEndpointList, query=wh.WebhookEndpointListQuery, errors=(400,)),
    Operation("get", "/v1/webhook_endpoints/{endpoint_id}", "retrieveWebhookEndpoint", "Retrieve a webhook "
              "endpoint", "Webhooks", wh.WebhookEndpoint, errors=(404,)),
    Operation("post", "/v1/webhook_endpoints/{endpoint_id}", "updateWebhookEndpoint", "Update a webhook endpoint's "
              "name, URL, event types or status", "Webhooks", wh.WebhookEndpoint, wh.WebhookEndpointUpdate,
              errors=(*BODY_ERRORS, 404)),
    Operation("delete", "/v1/webhook_endpoints/{endpoint_id}", "deleteWebhookEndpoint", "Delete a webhook "
              "endpoint", "Webhooks", wh.DeletedWebhookEndpoint, errors=(404,)),
    Operation("post", "/v1/webhook_endpoints/{endpoint_id}/rotate_secret", "rotateWebhookEndpointSecret",
              "Give the endpoint a new signing secret (in this answer only), optionally keeping the old one "
              "for 24 hours", "Webhooks", wh.WebhookEndpointWithSecret, wh.WebhookRotateSecret,
              errors=(*BODY_ERRORS, 404)),
    Operation("post", "/v1/webhook_endpoints/{endpoint_id}/test", "testWebhookEndpoint",
              "Send one signed sample event to the endpoint and report the receiver's status code", "Webhooks",
              wh.WebhookEndpointTestResult, wh.WebhookTest, errors=(*BODY_ERRORS, 404, 409)),
    Operation("get", "/v1/webhook_event_types", "listWebhookEventTypes", "The event types an endpoint may "
              "subscribe to, with what each means", "Webhooks", wh.WebhookEventTypeList),
    Operation("get", "/v1/webhook_endpoints/{endpoint_id}/deliveries", "listWebhookDeliveries",
              "The endpoint's delivery log, newest first: each event's attempts with status codes and latency, "
              "and when the next retry is due", "Webhooks", wd.WebhookDeliveryList, query=wd.WebhookDeliveryListQuery,
              errors=(400, 404)),
)
