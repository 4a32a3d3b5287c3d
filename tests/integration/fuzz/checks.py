"""What every fuzzed answer must satisfy, shared by the quick fuzz run and the long one in tests/reliability."""
from __future__ import annotations

import json

import requests
import schemathesis
from pydantic import ValidationError
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from shared.contracts.errors import AnthropicError, OpenAIError
from shared.contracts.openapi import document
from tests.integration.fuzz.server import DevServer
from tests.integration.fuzz.steering import Seeds, steer

ANTHROPIC_PATHS = ("/v1/messages",)
# an event stream never ends: it is opened, its status and headers read, and closed
ENDLESS = ("/v1/events",)
REQUEST_TIMEOUT_SECONDS = 30


# the exact keys of each envelope: either one's model alone would accept the other's body
SHAPES = {OpenAIError: ({"error"}, {"message", "type", "param", "code"}),
          AnthropicError: ({"type", "error"}, {"type", "message"})}


def envelope_for(path: str):
    return AnthropicError if path.startswith(ANTHROPIC_PATHS) else OpenAIError


def check_error_envelope(path: str, status: int, body: bytes) -> None:
    if not 400 <= status < 500:
        return
    model = envelope_for(path)
    outer, inner = SHAPES[model]
    try:
        parsed = model.model_validate_json(body)
        payload = json.loads(body)
    except (ValidationError, ValueError) as exc:
        raise AssertionError(f"{status} on {path} is not the {model.__name__} envelope: {body[:300]!r}") from exc
    assert set(payload) == outer and set(payload["error"]) == inner, (
        f"{status} on {path} is not the {model.__name__} envelope: {body[:300]!r}")
    assert model is not AnthropicError or parsed.type == "error", body[:300]


def error_envelope(ctx, response, case) -> bool | None:
    """Every 4xx is the API's own envelope: OpenAI's, or Anthropic's on /v1/messages."""
    check_error_envelope(case.operation.path, response.status_code, response.content)
    return None


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection, error_envelope]


def load_schema(max_examples: int, deterministic: bool):
    schema = schemathesis.openapi.from_dict(document())
    # the key is sent as is with every call: a mutated Authorization header would only test the 401
    schema.config.generation.update(max_examples=max_examples, deterministic=deterministic, database="none",
                                    with_security_parameters=False)
    schema.config.update(request_timeout=REQUEST_TIMEOUT_SECONDS)
    return schema


def open_stream(case, server: DevServer, org: str = "fuzz") -> None:
    kwargs = case.as_transport_kwargs(base_url=server.url, headers=server.auth(org))
    with requests.request(**kwargs, stream=True, timeout=REQUEST_TIMEOUT_SECONDS) as response:
        assert response.status_code < 500, (response.status_code, response.text[:300])
        if response.status_code >= 400:
            check_error_envelope(case.operation.path, response.status_code, response.content)
        else:
            assert response.headers["Content-Type"].startswith("text/event-stream")


def exercise(case, seeds: Seeds) -> None:
    server = seeds.server
    steer(case, seeds)
    if case.operation.path in ENDLESS:
        open_stream(case, server)
        return
    case.call_and_validate(base_url=server.url, headers=server.auth(), checks=CHECKS)
    assert server.alive(), server.log_tail()
