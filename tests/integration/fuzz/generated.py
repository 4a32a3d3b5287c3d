"""What the generated hostile-input tests derive from the OpenAPI document and send: every JSON request body,
every integer/number property in it (nested ones too), bodies to put them in, and the calls themselves."""
from __future__ import annotations

import copy
import itertools

import requests

from shared.contracts.openapi import document
from tests.integration.fuzz.checks import check_error_envelope
from tests.integration.fuzz.steering import MODEL, Seeds, path_value

DOC = document()
SCHEMAS = DOC.get("components", {}).get("schemas", {})
TIMEOUT = 30
MAX_FIELD_DEPTH = 6
# a body each endpoint would accept, so that only the field under test is wrong
BASE_BODIES = {
    "/v1/uploads": {"bytes": 1024, "filename": "w.safetensors", "mime_type": "application/octet-stream",
                    "purpose": "lora", "expires_after": {"anchor": "created_at", "seconds": 3600}},
    "/v1/chat/completions": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    "/v1/responses": {"model": MODEL, "input": "hi", "max_output_tokens": 2},
    "/v1/messages": {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]},
}
# past every bound a field can have; JSON numbers only (the body parser's own limits are tested apart)
HUGE_NUMBERS = [2**64, -(2**64), 2**63, 10**400, -(10**400), 1e308, -1e308]


def resolve(schema: dict) -> dict:
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def numeric_paths(schema: dict, prefix: tuple = ()) -> set[tuple]:
    """Where a number can go in a body of `schema`: property names, and 0 for "an item of this array"."""
    schema, found = resolve(schema), set()
    for key in ("anyOf", "oneOf", "allOf"):
        for member in schema.get(key, []):
            found |= numeric_paths(member, prefix)
    if schema.get("type") in ("integer", "number"):
        found.add(prefix)
    if len(prefix) < MAX_FIELD_DEPTH:
        for name, sub in schema.get("properties", {}).items():
            found |= numeric_paths(sub, (*prefix, name))
        if isinstance(schema.get("items"), dict):
            found |= numeric_paths(schema["items"], (*prefix, 0))
    return found


def top_level_fields(schema: dict) -> list[str]:
    return sorted(resolve(schema).get("properties", {})) or ["x"]


def json_operations() -> list[tuple[str, str, dict]]:
    """(METHOD, path, body schema) of every operation that takes a JSON body."""
    found = []
    for path, operations in DOC["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                found.append((method.upper(), path, content["application/json"]["schema"]))
    return found


def numeric_fields() -> list[tuple[str, str, tuple]]:
    return sorted((method, path, field) for method, path, schema in json_operations()
                  for field in numeric_paths(schema) if field)


def body_with(path: str, field: tuple, value) -> dict:
    """The endpoint's base body with `value` at `field` (objects and arrays made on the way where missing)."""
    body = copy.deepcopy(BASE_BODIES.get(path, {}))
    node = body
    for step, following in itertools.pairwise(field):
        kind = list if following == 0 else dict
        if step == 0:
            if not node or not isinstance(node[0], kind):
                node[:1] = [kind()]
        elif not isinstance(node.get(step), kind):
            node[step] = kind()
        node = node[step]
    if field[-1] == 0:
        node[:1] = [value]
    else:
        node[field[-1]] = value
    return body


def url_for(seeds: Seeds, method: str, path: str) -> str:
    for name in [part[1:-1] for part in path.split("/") if part.startswith("{")]:
        path = path.replace(f"{{{name}}}", path_value(seeds, method, path, name) or "unknown")
    return seeds.server.url + path


def send(seeds: Seeds, method: str, path: str, data: bytes, headers: dict | None = None) -> requests.Response:
    return requests.request(method, url_for(seeds, method, path), data=data, timeout=TIMEOUT,
                            headers={**seeds.server.auth(), "Content-Type": "application/json", **(headers or {})})


def assert_4xx_envelope(response: requests.Response, path: str) -> None:
    assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:300])
    check_error_envelope(path, response.status_code, response.content)
