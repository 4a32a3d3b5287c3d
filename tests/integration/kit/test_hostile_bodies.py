"""Bodies that used to reach the interpreter's limits are 400s in the API's envelope (issue 15, finding 7)."""
import pytest

from shared.http.requests import MAX_JSON_DEPTH
from tests.integration.kit.test_http_kit import kit  # noqa: F401 -- the fixture

DEEP = b'{"name": "ab", "extra": ' + b"[" * 1000 + b"]" * 1000 + b"}"
LONG_NUMBER = b'{"name": "ab", "count": ' + b"7" * 5000 + b"}"


def nested(depth: int) -> bytes:
    """A body whose arrays and objects nest `depth` deep, top-level object included."""
    return b'{"name": "ab", "extra": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


@pytest.mark.parametrize("body", [DEEP, LONG_NUMBER, nested(MAX_JSON_DEPTH + 1), b"[" * 100_000])
async def test_deep_or_numerically_huge_bodies_are_400s_in_the_openai_envelope(kit, body):  # noqa: F811
    client, key, _ = kit
    resp = await client.post("/v1/echo", data=body, headers={"x-api-key": key, "Content-Type": "application/json"})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_json"


@pytest.mark.parametrize("body", [DEEP, LONG_NUMBER])
async def test_and_in_the_anthropic_envelope_on_messages(kit, body):  # noqa: F811
    client, key, _ = kit
    resp = await client.post("/v1/messages", data=body, headers={"x-api-key": key})
    assert resp.status == 400
    payload = await resp.json()
    assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"


async def test_nesting_up_to_the_limit_is_read(kit):  # noqa: F811
    client, key, _ = kit
    resp = await client.post("/v1/echo", data=nested(MAX_JSON_DEPTH), headers={"x-api-key": key})
    assert resp.status == 200
