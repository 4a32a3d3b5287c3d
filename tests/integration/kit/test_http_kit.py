"""The HTTP kit as a caller meets it: auth, error envelopes, request ids, health and metrics."""
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, Field

from shared.composition import build_platform
from shared.contracts.errors import Conflict
from shared.http.app import create_app
from shared.http.requests import json_response, org_id, read_model
from shared.platform import ServicePart
from shared.settings import Settings


class Echo(BaseModel):
    name: str = Field(min_length=2)
    count: int = 1


async def echo(request: web.Request) -> web.Response:
    body = await read_model(request, Echo)
    return json_response({"org": org_id(request), **body.model_dump()})


async def conflict(request: web.Request) -> web.Response:
    raise Conflict("already exists", param="name")


async def streamed(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"chunk")
    return response


async def crash(request: web.Request) -> web.Response:
    raise RuntimeError("secret internals")


def echo_part() -> ServicePart:
    routes = [web.post("/v1/echo", echo), web.post("/v1/messages", echo), web.get("/v1/conflict", conflict),
              web.get("/v1/crash", crash), web.get("/v1/streamed", streamed), web.get("/internal/v1/ping", lambda r: json_response({"ok": True}))]
    return ServicePart(name="test", routes=routes)


@pytest.fixture
async def kit(tmp_path):
    platform = build_platform(Settings(data_dir=tmp_path, service_token="tok"), source="test")
    _, key = await platform.identity.create("acme")
    record, revoked = await platform.identity.create("acme")
    await platform.identity.revoke(record.id)
    client = TestClient(TestServer(create_app(platform, [echo_part()])))
    await client.start_server()
    yield client, key, revoked
    await client.close()


async def test_no_key_gets_401_in_the_openai_envelope(kit):
    client, _, _ = kit
    resp = await client.post("/v1/echo", json={"name": "ab"})
    assert resp.status == 401
    body = await resp.json()
    assert body["error"]["type"] == "authentication_error" and body["error"]["code"] == "missing_api_key"
    assert resp.headers["x-request-id"].startswith("req_")


async def test_revoked_and_unknown_keys_get_401(kit):
    client, _, revoked = kit
    for key in (revoked, "lsk-nope"):
        resp = await client.post("/v1/echo", json={"name": "ab"}, headers={"Authorization": f"Bearer {key}"})
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "invalid_api_key"


async def test_bearer_and_x_api_key_both_authenticate(kit):
    client, key, _ = kit
    for headers in ({"Authorization": f"Bearer {key}"}, {"x-api-key": key}):
        resp = await client.post("/v1/echo", json={"name": "ab"}, headers=headers)
        assert resp.status == 200
        assert (await resp.json()) == {"org": "acme", "name": "ab", "count": 1}


async def test_bad_json_is_a_400_envelope_never_a_500(kit):
    client, key, _ = kit
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for body in (b"{not json", b"[1, 2]", b"\xff\xfe", b'{"name": "a"}', b'{"name": "ab", "count": "x"}'):
        resp = await client.post("/v1/echo", data=body, headers=headers)
        assert resp.status == 400, body
        error = (await resp.json())["error"]
        assert error["type"] == "invalid_request_error" and error["message"]
    resp = await client.post("/v1/echo", data=b'{"name": "a"}', headers=headers)
    assert (await resp.json())["error"]["param"] == "name"


async def test_messages_path_answers_in_the_anthropic_envelope(kit):
    client, key, _ = kit
    resp = await client.post("/v1/messages", data=b"{", headers={"x-api-key": key})
    assert resp.status == 400
    assert (await resp.json()) == {"type": "error", "error": {"type": "invalid_request_error",
                                                                "message": (await resp.json())["error"]["message"]}}
    resp = await client.post("/v1/messages", json={})
    assert (await resp.json())["error"]["type"] == "authentication_error"


async def test_conflict_tells_sdks_not_to_retry_and_crashes_leak_nothing(kit):
    client, key, _ = kit
    headers = {"Authorization": f"Bearer {key}"}
    resp = await client.get("/v1/conflict", headers=headers)
    assert resp.status == 409 and resp.headers["x-should-retry"] == "false"
    resp = await client.get("/v1/crash", headers=headers)
    assert resp.status == 500
    assert "secret" not in await resp.text()
    resp = await client.get("/v1/nowhere", headers=headers)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "unknown_url"


async def test_request_id_is_echoed_on_plain_and_streamed_responses(kit):
    client, key, _ = kit
    resp = await client.post("/v1/echo", json={"name": "ab"}, headers={"x-api-key": key, "x-request-id": "abc-123"})
    assert resp.headers["x-request-id"] == "abc-123"
    resp = await client.get("/v1/streamed", headers={"x-api-key": key, "x-request-id": "abc-456"})
    assert resp.headers["x-request-id"] == "abc-456" and await resp.read() == b"chunk"


async def test_internal_routes_need_the_service_token(kit):
    client, key, _ = kit
    assert (await client.get("/internal/v1/ping", headers={"Authorization": f"Bearer {key}"})).status == 404
    resp = await client.get("/internal/v1/ping", headers={"x-service-token": "tok"})
    assert resp.status == 200


async def test_health_ready_and_metrics(kit):
    client, key, _ = kit
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200, await ready.text()
    assert (await ready.json())["checks"]["bus"] is True
    await client.post("/v1/echo", json={"name": "ab"}, headers={"x-api-key": key})
    text = await (await client.get("/metrics")).text()
    assert 'loraserve_http_requests_total{method="POST",route="/v1/echo",status="200"}' in text


def test_union_member_types_never_show_up_as_the_param():
    from pydantic import BaseModel, ValidationError

    from shared.http.requests import bad_request_from

    class Body(BaseModel):
        input: str | list[int]

    try:
        Body.model_validate({"input": 5})
    except ValidationError as exc:
        error = bad_request_from(exc)
    assert error.param == "input"
