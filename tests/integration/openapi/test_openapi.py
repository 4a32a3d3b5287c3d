"""The OpenAPI document: committed as generated, equal to the routes the platform serves, valid, served."""
from __future__ import annotations

import json
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from shared.composition import build_platform, embedded_app
from shared.contracts.openapi import document, render
from shared.http.app import create_app
from shared.settings import Settings

COMMITTED = Path(__file__).resolve().parents[3] / "shared" / "contracts" / "openapi.json"
METHODS = {"get", "post", "put", "patch", "delete"}


def served_operations(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, path template) of every public route; HEAD is aiohttp's automatic twin of a GET."""
    app = embedded_app(Settings(data_dir=tmp_path))
    found = set()
    for route in app.router.routes():
        path = route.resource.canonical
        if path.startswith("/v1/") and route.method.lower() in METHODS:
            found.add((route.method.lower(), path))
    return found


def documented_operations() -> set[tuple[str, str]]:
    return {(method, path) for path, item in document()["paths"].items() for method in item if method in METHODS}


def test_the_committed_document_is_what_the_generator_writes():
    assert COMMITTED.read_text() == render(), (
        "shared/contracts/openapi.json is stale: run `python -m shared.contracts.openapi > "
        "shared/contracts/openapi.json`")


def test_every_public_route_is_documented_and_every_documented_operation_is_served(tmp_path):
    served, documented = served_operations(tmp_path), documented_operations()
    assert served - documented == set(), "routes missing from the OpenAPI document"
    assert documented - served == set(), "documented operations no app serves"
    assert len(served) >= 20


def test_the_document_is_valid_openapi_3_1():
    validate(json.loads(COMMITTED.read_text()))
    assert document()["openapi"].startswith("3.1")


def test_every_operation_requires_a_key_and_documents_the_401_envelope():
    doc = document()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert (schemes["apiKeyAuth"]["in"], schemes["apiKeyAuth"]["name"]) == ("header", "x-api-key")
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert operation.get("security", doc["security"]), (method, path)
            envelope = "AnthropicError" if path == "/v1/messages" else "OpenAIError"
            assert operation["responses"]["401"]["$ref"].endswith(f"/{envelope}401"), (method, path)


async def test_the_kit_serves_the_document_without_a_key(tmp_path):
    platform = build_platform(Settings(data_dir=tmp_path), source="test")
    async with TestClient(TestServer(create_app(platform, []))) as client:
        response = await client.get("/openapi.json")
        assert response.status == 200
        assert await response.json() == json.loads(COMMITTED.read_text())
