"""The public /v1 API as an OpenAPI 3.1 document, generated from the contract models and one route table.

`python -m shared.contracts.openapi > shared/contracts/openapi.json`; a test keeps the committed
file equal to this and the table equal to the routes the embedded app serves. The kit serves
the same document at GET /openapi.json.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from shared.contracts import files as f
from shared.contracts import inference as inf
from shared.contracts import loras as lo
from shared.contracts.cloudevents import CloudEvent
from shared.contracts.common import ListEnvelope, ListParams
from shared.contracts.errors import AnthropicError, OpenAIError

API_VERSION = "1.0.0"
REF = "#/components/schemas/{model}"
SECURITY = [{"bearerAuth": []}, {"apiKeyAuth": []}]
ERROR_TEXT = {
    400: "The request is invalid; `error.param` names the first offending parameter.",
    401: "No API key, or an unknown or revoked one.",
    404: "No such object in the caller's organization (another organization's objects are 404 too).",
    409: "The request conflicts with the object's current state.",
    413: "The request body is over the size limit.",
    415: "The request body has the wrong content type.",
    416: "The requested byte range is outside the file.",
    503: "A dependency is unavailable right now; retry.",
    504: "No worker answered before the request's deadline.",
}


# -- wire shapes that exist only as lists or query strings -------------------------------
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


class FileUploadForm(BaseModel):
    file: bytes = Field(description="The file's bytes (a multipart file field with a filename).")
    purpose: f.FilePurpose = Field(description="`lora` for adapter files.")


class UploadPartForm(BaseModel):
    data: bytes = Field(description="The part's bytes (at most 64 MiB).")


# -- the route table ---------------------------------------------------------------------
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
    stream: str | None = None  # what each SSE frame's `data` is, when the operation can stream
    extra_responses: dict[str, Any] = field(default_factory=dict)
    anthropic: bool = False


PATH_PARAMS = {
    "file_id": "A File id (`file-…`).", "upload_id": "An Upload id (`upload_…`).",
    "ref": "A LoRA's name or its UUID.", "response_id": "A Response id (`resp_…`).",
    "model_id": "A catalogue model id; it contains a `/` (e.g. `moonshotai/Kimi-K2.6`), sent as is.",
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
              f.FileObject, FileUploadForm, "multipart", errors=BODY_ERRORS),
    Operation("get", "/v1/files", "listFiles", "List the organization's files", "Files", FileList,
              query=FileListQuery, errors=(400,)),
    Operation("get", "/v1/files/{file_id}", "retrieveFile", "Retrieve a file", "Files", f.FileObject,
              errors=(404,)),
    Operation("get", "/v1/files/{file_id}/content", "downloadFile", "Download a file's bytes (Range supported)",
              "Files", None, errors=(404, 416), extra_responses=CONTENT_RESPONSES),
    Operation("delete", "/v1/files/{file_id}", "deleteFile", "Delete a file no LoRA uses", "Files",
              f.FileDeletedObject, errors=(404, 409)),
    Operation("post", "/v1/uploads", "createUpload", "Start a multipart upload", "Uploads", f.UploadObject,
              f.CreateUploadBody, errors=BODY_ERRORS),
    Operation("post", "/v1/uploads/{upload_id}/parts", "addUploadPart", "Add a part to an upload", "Uploads",
              f.UploadPartObject, UploadPartForm, "multipart", errors=(*BODY_ERRORS, 404, 409)),
    Operation("post", "/v1/uploads/{upload_id}/complete", "completeUpload",
              "Complete an upload: its parts, in the order given, become one File", "Uploads", f.UploadObject,
              f.CompleteUploadBody, errors=(*BODY_ERRORS, 404, 409)),
    Operation("post", "/v1/uploads/{upload_id}/cancel", "cancelUpload", "Cancel an upload", "Uploads",
              f.UploadObject, errors=(404, 409)),
    Operation("post", "/v1/loras", "createLora", "Create a LoRA from two uploaded files; validation starts",
              "LoRAs", lo.Lora, lo.LoraCreate, errors=(*BODY_ERRORS, 409, 503)),
    Operation("get", "/v1/loras", "listLoras", "List the organization's LoRAs", "LoRAs", LoraList,
              query=ListParams, errors=(400,)),
    Operation("get", "/v1/loras/{ref}", "retrieveLora", "Retrieve a LoRA by name or UUID", "LoRAs", lo.Lora,
              errors=(404,)),
    Operation("patch", "/v1/loras/{ref}", "updateLora",
              "Update a LoRA; models added to supported_models are validated", "LoRAs", lo.Lora, lo.LoraPatch,
              errors=(*BODY_ERRORS, 404, 409, 503)),
    Operation("delete", "/v1/loras/{ref}", "deleteLora", "Delete a LoRA", "LoRAs", lo.LoraDeletedResponse,
              errors=(404,)),
    Operation("get", "/v1/events", "streamEvents", "Follow the organization's public events (SSE)", "Events",
              None, query=EventsQuery, errors=(400, 503),
              stream="a `CloudEvent` (components/schemas/CloudEvent)"),
    Operation("post", "/v1/chat/completions", "createChatCompletion",
              "OpenAI Chat Completions; `metadata.lora` names a LoRA", "Inference", inf.ChatCompletion,
              inf.ChatCompletionRequest, errors=(*BODY_ERRORS, 404, 503, 504),
              stream="a `ChatCompletionChunk`, then `[DONE]`"),
    Operation("post", "/v1/responses", "createResponse",
              "OpenAI Responses (sync, streamed or background); `metadata.lora` names a LoRA", "Inference",
              inf.ResponseObject, inf.ResponseCreateRequest, errors=(*BODY_ERRORS, 404, 503, 504),
              stream="a Responses stream event (`response.created` … `response.completed`)"),
    Operation("get", "/v1/responses/{response_id}", "retrieveResponse", "Retrieve a stored response",
              "Inference", inf.ResponseObject, errors=(404,)),
    Operation("post", "/v1/responses/{response_id}/cancel", "cancelResponse", "Cancel a background response",
              "Inference", inf.ResponseObject, errors=(400, 404, 503)),
    Operation("post", "/v1/messages", "createMessage",
              "Anthropic Messages; `metadata.lora` names a LoRA; errors in Anthropic's envelope", "Inference",
              inf.AnthropicMessage, inf.MessagesRequest, errors=(*BODY_ERRORS, 404, 503, 504),
              stream="an Anthropic stream event named on its `event:` line", anthropic=True),
    Operation("get", "/v1/models", "listModels", "List the catalogue's models", "Models", ModelList),
    Operation("get", "/v1/models/{model_id}", "retrieveModel", "Retrieve a model with its LoRA limits",
              "Models", inf.ModelObject, errors=(404,)),
)


# -- building the document ---------------------------------------------------------------
def _schema_models() -> list[tuple[type[BaseModel], str]]:
    pairs: dict[tuple[type[BaseModel], str], None] = {}
    for op in OPERATIONS:
        if op.response is not None:
            pairs[(op.response, "serialization")] = None
        if op.body is not None:
            pairs[(op.body, "validation")] = None
    for model in (OpenAIError, AnthropicError, inf.ChatCompletionChunk, CloudEvent):
        pairs[(model, "serialization")] = None
    return list(pairs)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k not in ("title", "description")}
        param = {"name": name, "in": "query", "required": name in schema.get("required", []), "schema": prop}
        description = model.model_fields[name].description
        if description:
            param["description"] = description
        params.append(param)
    return params


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params = [{"name": name, "in": "path", "required": True, "description": PATH_PARAMS[name],
               "schema": {"type": "string"}} for name in re.findall(r"\{(\w+)\}", op.path)]
    if op.query is not None:
        params += _query_parameters(op.query)
    if op.path.endswith("/content"):
        params.append({"name": "Range", "in": "header", "required": False, "schema": {"type": "string"},
                       "description": "One byte range, `bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX`."})
    return params


def _request_body(op: Operation) -> dict[str, Any]:
    media = "multipart/form-data" if op.body_kind == "multipart" else "application/json"
    content: dict[str, Any] = {"schema": _ref(op.body)}
    if op.body_kind == "multipart":
        content["encoding"] = {name: {"contentType": "application/octet-stream"}
                               for name, info in op.body.model_fields.items() if info.annotation is bytes}
    return {"required": True, "content": {media: content}}


def _success(op: Operation) -> dict[str, Any]:
    if op.extra_responses:
        return dict(op.extra_responses)
    content: dict[str, Any] = {}
    if op.response is not None:
        content["application/json"] = {"schema": _ref(op.response)}
    if op.stream is not None:
        content["text/event-stream"] = {"schema": {"type": "string",
                                                   "description": f"Server-Sent Events; each `data:` is {op.stream}"}}
    description = "OK" if op.stream is None or op.response is None else "OK (JSON, or SSE when `stream` is true)"
    return {"200": {"description": description, "content": content}}


def _responses(op: Operation) -> dict[str, Any]:
    responses = _success(op)
    envelope = "AnthropicError" if op.anthropic else "OpenAIError"
    for status in sorted({401, *op.errors}):
        responses[str(status)] = {"$ref": f"#/components/responses/{envelope}{status}"}
    return responses


def _operation(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag]}
    params = _parameters(op)
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = _request_body(op)
    out["responses"] = _responses(op)
    return out


def _error_responses() -> dict[str, Any]:
    out = {}
    statuses = sorted({401, *(s for op in OPERATIONS for s in op.errors)})
    for envelope in ("OpenAIError", "AnthropicError"):
        for status in statuses:
            out[f"{envelope}{status}"] = {"description": ERROR_TEXT[status], "content": {
                "application/json": {"schema": {"$ref": REF.format(model=envelope)}}}}
    return out


def _schemas() -> dict[str, Any]:
    _, top = models_json_schema(_schema_models(), ref_template=REF)
    return dict(sorted(top["$defs"].items()))


def _paths() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return paths


@cache
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LoRAServe public API",
            "version": API_VERSION,
            "description": "Upload PEFT LoRA adapters, have them validated on each base model they name, and use "
                           "them on OpenAI- and Anthropic-compatible inference APIs via `metadata.lora`. Errors "
                           "are OpenAI's envelope, except on /v1/messages (Anthropic's).",
        },
        "security": SECURITY,
        "tags": [{"name": name} for name in dict.fromkeys(op.tag for op in OPERATIONS)],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer KEY`"},
                "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
            "schemas": _schemas(),
            "responses": _error_responses(),
        },
    }


def render() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
