"""Hostile input generated rather than hand-picked (issue 15, "Also"), against `loraserve dev`: huge numbers in
every integer/number property of every JSON request body (the list comes from the OpenAPI document), bodies
nested past the parser's limit at every JSON endpoint, Range positions of any length, and oversize headers on
every operation. Each answer is a 4xx in the API's envelope, never a 5xx or a hang."""
from __future__ import annotations

import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.http.requests import MAX_JSON_DEPTH
from tests.integration.fuzz.generated import (
    DOC,
    HUGE_NUMBERS,
    TIMEOUT,
    assert_4xx_envelope,
    body_with,
    json_operations,
    numeric_fields,
    send,
    top_level_fields,
    url_for,
)

FEW = settings(max_examples=6, deadline=None, database=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
huge_numbers = (st.sampled_from(HUGE_NUMBERS) | st.integers(min_value=2**63, max_value=10**600)
                | st.integers(min_value=-(10**600), max_value=-(2**63))
                | st.floats(min_value=1e300, allow_infinity=False) | st.floats(max_value=-1e300, allow_infinity=False))


def test_the_document_has_numeric_fields_to_fuzz():
    fields = {(path, field) for _, path, field in numeric_fields()}
    assert {("/v1/chat/completions", ("seed",)), ("/v1/uploads", ("bytes",)), ("/v1/messages", ("max_tokens",))} <= fields


@pytest.mark.parametrize(("method", "path", "field"), numeric_fields(), ids=lambda v: ".".join(map(str, v))
                         if isinstance(v, tuple) else str(v))
@FEW
@given(value=huge_numbers)
def test_a_huge_number_in_any_numeric_field_is_a_4xx(seeds, method, path, field, value):
    response = send(seeds, method, path, json.dumps(body_with(path, field, value)).encode())
    assert_4xx_envelope(response, path)


def deep(field: str, depth: int, kind: str) -> bytes:
    """`{"field": ...}` whose value nests `depth` arrays or objects."""
    opening, inner, closing = (b"[", b"", b"]") if kind == "array" else (b'{"a": ', b"1", b"}")
    return b'{"' + field.encode() + b'": ' + opening * depth + inner + closing * depth + b"}"


@pytest.mark.parametrize(("method", "path", "schema"), json_operations(), ids=lambda v: v if isinstance(v, str) else "")
@FEW
@given(data=st.data(), depth=st.integers(MAX_JSON_DEPTH, 20_000), kind=st.sampled_from(["array", "object"]))
def test_a_body_nested_past_the_limit_is_a_400_at_every_json_endpoint(seeds, method, path, schema, data, depth, kind):
    field = data.draw(st.sampled_from(top_level_fields(schema)))
    response = send(seeds, method, path, deep(field, depth, kind))
    assert response.status_code == 400, (path, depth, response.status_code, response.text[:300])
    assert_4xx_envelope(response, path)


@FEW
@given(digits=st.integers(20, 8000), where=st.sampled_from(["start", "end", "suffix"]))
def test_a_range_position_of_any_length_past_int64_is_a_400(seeds, digits, where):
    number = "9" * digits
    header = {"start": f"bytes={number}-", "end": f"bytes=0-{number}", "suffix": f"bytes=-{number}"}[where]
    path = "/v1/files/{file_id}/content"
    response = requests.get(url_for(seeds, "GET", path), headers={**seeds.server.auth(), "Range": header},
                            timeout=TIMEOUT)
    assert response.status_code == 400, (header[:40], response.status_code, response.text[:300])
    assert_4xx_envelope(response, path)


OPERATIONS = sorted((method.upper(), path) for path, ops in DOC["paths"].items() for method in ops)
HEADER_NAMES = ["x-padding", "x-request-id", "authorization", "x-api-key", "range", "content-type", "x-service-token"]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=lambda v: v)
@settings(max_examples=3, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(HEADER_NAMES), size=st.integers(8 * 1024, 256 * 1024), count=st.integers(1, 400))
def test_oversize_headers_are_a_4xx_on_every_operation(seeds, method, path, name, size, count):
    headers = {name: "x" * size} if count < 200 else {f"x-h{i}": "v" for i in range(count)}
    with requests.request(method, url_for(seeds, method, path), headers=headers, timeout=TIMEOUT,
                          stream=True) as response:
        assert 400 <= response.status_code < 500, (method, path, name, size, count, response.status_code)
    assert seeds.server.alive(), seeds.server.log_tail()
