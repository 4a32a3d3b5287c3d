"""The public /v1 API as an OpenAPI 3.1 document, generated from the contract models and the route table
(`openapi_routes`).

`python -m shared.contracts.openapi > shared/contracts/openapi.json`; a test keeps the committed
file equal to this and the table equal to the routes the embedded app serves. The kit serves
the same document at GET /openapi.json.
"""
from __future__ import annotations

import json
import re
import sys
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.contracts import inference as inf
from shared.contracts.cloudevents import CloudEvent
from shared.contracts.errors import AnthropicError, OpenAIError
from shared.contracts.openapi_routes import (
    API_VERSION,
    ERROR_TEXT,
    OPERATIONS,
    PATH_PARAMS,
    REF,
    SECURITY,
    Operation,
    Stream,
    ref_of,
)


# -- building the document ---------------------------------------------------------------
def _json_data(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": schema}


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
    return ref_of(model.__name__)


def _sse_event(stream: Stream) -> dict[str, Any]:
    """One event as Open API before 3.2 describes a stream: `schema` is each event's fields."""
    data = _json_data(stream.data)
    if stream.done is not None:
        data = {"anyOf": [{"const": stream.done}, data]}
    return {"type": "object", "description": f"Server-Sent Events: {stream.description}.", "required": ["data"],
            "properties": {"event": {"type": "string"}, "id": {"type": "string"}, "data": data}}


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query value is a string or absent, never null: `str | None = None` documents as the str."""
    variants = [v for v in prop.get("anyOf", ()) if v != {"type": "null"}]
    if len(variants) != 1:
        return prop
    rest = {k: v for k, v in prop.items() if k != "anyOf" and not (k == "default" and v is None)}
    return {**variants[0], **rest}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = _not_null({k: v for k, v in prop.items() if k not in ("title", "description")})
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
    if op.path == "/v1/events":
        params.append({"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"},
                       "description": "Resume after this event id (what EventSource sends on reconnecting)."})
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
        content["text/event-stream"] = {"schema": _sse_event(op.stream)}
    description = "OK" if op.stream is None or op.response is None else "OK (JSON, or SSE when `stream` is true)"
    return {"200": {"description": description, "content": content}}


def _responses(op: Operation) -> dict[str, Any]:
    responses = _success(op)
    envelope = "AnthropicError" if op.anthropic else "OpenAIError"
    # every authenticated route may answer 401, and 429 or (the limiter failing closed) 503 from the rate limits
    for status in sorted({401, 429, 503, *op.errors}):
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
    statuses = sorted({401, 429, 503, *(s for op in OPERATIONS for s in op.errors)})
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
