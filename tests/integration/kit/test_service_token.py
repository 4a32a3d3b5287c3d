"""/internal/* is closed unless the caller sends the configured token; a blank token closes it for everyone."""
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from shared.composition import build_platform
from shared.http.app import create_app
from shared.http.requests import json_response
from shared.platform import ServicePart
from shared.settings import DEV_SERVICE_TOKEN, Settings, UnsafeSettings

TOKEN = "0123456789abcdef" * 4


async def ping(request: web.Request) -> web.Response:
    return json_response({"ok": True})


def internal_part() -> ServicePart:
    return ServicePart(name="internal", routes=[web.get("/internal/v1/ping", ping)])


async def internal_status(settings: Settings, headers: dict) -> int:
    client = TestClient(TestServer(create_app(build_platform(settings, source="test"), [internal_part()])))
    await client.start_server()
    try:
        return (await client.get("/internal/v1/ping", headers=headers)).status
    finally:
        await client.close()


@pytest.mark.parametrize("headers", [{}, {"x-service-token": ""}, {"x-service-token": DEV_SERVICE_TOKEN}])
async def test_an_empty_expected_token_opens_nothing(tmp_path, headers):
    assert await internal_status(Settings(data_dir=tmp_path, service_token=""), headers) == 404


async def test_production_with_a_real_token_refuses_the_dev_default(tmp_path):
    settings = Settings(data_dir=tmp_path, env="production", service_token=TOKEN)
    assert await internal_status(settings, {"x-service-token": DEV_SERVICE_TOKEN}) == 404
    assert await internal_status(settings, {"x-service-token": TOKEN}) == 200


def test_production_without_a_token_builds_no_app(tmp_path):
    platform = build_platform(Settings(data_dir=tmp_path, env="production"), source="test")
    with pytest.raises(UnsafeSettings):
        create_app(platform, [internal_part()])


def test_only_a_process_serving_public_routes_needs_the_key_pepper(tmp_path):
    platform = build_platform(Settings(data_dir=tmp_path, env="production", service_token=TOKEN), source="test")
    create_app(platform, [internal_part()])  # a worker or validator checks no API keys
    public = ServicePart(name="public", routes=[web.get("/v1/ping", ping)])
    with pytest.raises(UnsafeSettings, match="LORASERVE_KEY_PEPPER"):
        create_app(platform, [public])
