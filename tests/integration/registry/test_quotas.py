"""Per-org quotas in the registry (LoRAs, validations in flight) and the admin API that overrides them."""
from __future__ import annotations

import asyncio

from tests.integration.registry.conftest import KIMI, SERVICE_TOKEN, TINY

LIMITS = "/internal/v1/orgs/{org}/limits"


async def set_limits(stack, org: str = "org-a", **limits):
    response = await stack.http.put(LIMITS.format(org=org), json=limits, headers={"x-service-token": SERVICE_TOKEN})
    assert response.status == 200, await response.text()
    return await response.json()


async def refusal(response) -> dict:
    assert response.status == 403, await response.text()
    assert response.headers["x-should-retry"] == "false"
    error = (await response.json())["error"]
    assert error["code"] == "quota_exceeded"
    return error


async def test_the_loras_quota_set_through_the_admin_api_refuses_one_more(stack):
    view = await set_limits(stack, loras=1)
    assert {k: v for k, v in view["overrides"].items() if v is not None} == {"loras": 1}
    assert view["effective"]["loras"] == 1 and view["effective"]["files"] == 10_000
    assert (await stack.create("first")).status == 200
    error = await refusal(await stack.create("second"))
    assert error["param"] == "loras" and "LoRAs: 1 of 1 used" in error["message"]
    assert (await stack.create("second", org="org-b")).status == 200  # another org's LoRAs do not count

    await set_limits(stack)  # back to the defaults
    assert (await stack.create("second")).status == 200


async def test_concurrent_creates_never_pass_the_loras_quota(stack):
    await set_limits(stack, loras=3)
    files = await stack.adapter_files()
    responses = await asyncio.gather(*(stack.create(f"lora-{i}", files=files) for i in range(10)))
    passed = [r for r in responses if r.status == 200]
    assert 1 <= len(passed) <= 3
    assert all(r.status in (200, 403) for r in responses)
    assert await stack.registry.repository.count("org-a") == len(passed)


async def test_validations_in_flight_are_limited_on_create_and_patch(stack):
    await set_limits(stack, validations_in_flight=2)
    assert (await stack.create("two-models", models=(TINY, KIMI))).status == 200  # two pending records
    error = await refusal(await stack.create("one-more"))
    assert error["param"] == "validations_in_flight"
    assert "validations in flight: 2 of 2 used" in error["message"]
    assert (await stack.create("one-more", org="org-b")).status == 200

    await set_limits(stack, validations_in_flight=3)
    assert (await stack.create("tiny-only")).status == 200
    patched = await stack.http.patch("/v1/loras/tiny-only", json={"supported_models": [TINY, KIMI]},
                                     headers=stack.auth())
    error = await refusal(patched)
    assert "validations in flight: 3 of 3 used" in error["message"]
    renamed = await stack.http.patch("/v1/loras/tiny-only", json={"display_name": "Tiny"}, headers=stack.auth())
    assert renamed.status == 200  # a patch that adds no record is never refused


async def test_the_admin_api_is_internal_and_checks_its_input(stack):
    url = LIMITS.format(org="org-a")
    assert (await stack.http.put(url, json={"loras": 1})).status == 404  # no service token: no such route
    assert (await stack.http.get(url, headers=stack.auth())).status == 404
    token = {"x-service-token": SERVICE_TOKEN}
    bad = await stack.http.put(url, json={"loras": -1}, headers=token)
    assert bad.status == 400 and (await bad.json())["error"]["param"] == "loras"
    unknown = await stack.http.put(url, json={"lora": 5}, headers=token)
    assert unknown.status == 400
    wrong_org = await stack.http.get(LIMITS.format(org="Not.An.Org"), headers=token)
    assert wrong_org.status == 400
    await set_limits(stack, files=5)
    shown = await (await stack.http.get(url, headers=token)).json()
    assert shown["org_id"] == "org-a" and shown["overrides"]["files"] == 5 and shown["effective"]["files"] == 5
