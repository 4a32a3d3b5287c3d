"""Per-org overrides (`admin orgs set-limits`, stored with the identity store) of the inference limits, and the
management limit on the router's own non-inference routes (models, stored responses, usage), which the three
inference POSTs do not count against."""
from __future__ import annotations

import aiohttp
import pytest

from shared.quotas import OrgLimits
from tests.integration.inference_router.harness import TINY, start_stack
from tests.integration.inference_router.test_rate_limits import BODIES, post

TRIO = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")


@pytest.fixture
async def stack(tmp_path):
    stack = await start_stack(tmp_path)
    yield stack
    await stack.close()


async def call(stack, method: str, path: str, org: str = "org-a"):
    headers = {"Authorization": f"Bearer {stack.keys[org]}"}
    async with aiohttp.ClientSession() as session, session.request(method, stack.url(path),
                                                                    headers=headers) as response:
        return response.status, response.headers.copy(), await response.json()


@pytest.mark.parametrize("path", list(BODIES))
async def test_an_orgs_requests_override_limits_that_org_alone(stack, path):
    await stack.platform.identity.set_limits("org-a", OrgLimits(requests_per_minute=1))
    status, headers, _ = await post(stack, path)
    assert status == 200 and headers["x-ratelimit-limit-requests"] == "1"
    status, headers, body = await post(stack, path)
    assert status == 429 and int(headers["retry-after"]) >= 1
    if path != "/v1/messages":
        assert body["error"]["type"] == "requests" and body["error"]["code"] == "rate_limit_exceeded"
    for _ in range(2):
        status, headers, _ = await post(stack, path, org="org-b")
        assert status == 200 and headers["x-ratelimit-limit-requests"] == "3000"


async def test_an_orgs_tokens_override(stack):
    await stack.platform.identity.set_limits("org-a", OrgLimits(tokens_per_minute=20))
    body = {"model": TINY, "messages": [{"role": "user", "content": "x" * 13 * 25}]}
    status, headers, error = await post(stack, "/v1/chat/completions", body)
    assert status == 429 and error["error"]["type"] == "tokens" and headers["x-ratelimit-limit-tokens"] == "20"
    status, headers, _ = await post(stack, "/v1/chat/completions", body, org="org-b")
    assert status == 200 and headers["x-ratelimit-limit-tokens"] == "2000000"


async def test_the_routers_management_routes_share_one_limit_that_inference_does_not_use(stack):
    await stack.platform.identity.set_limits("org-a", OrgLimits(management_requests_per_minute=3))
    usage = "/v1/organization/usage/completions?start_time=0"
    seen = [await call(stack, "GET", p) for p in ("/v1/models", f"/v1/models/{TINY}", "/v1/responses/resp_missing")]
    assert [status for status, _, _ in seen] == [200, 200, 404]
    assert [h["x-ratelimit-remaining-requests"] for _, h, _ in seen] == ["2", "1", "0"]
    # inference is counted by its own limits: it still passes, with the inference limit in its headers
    status, headers, _ = await post(stack, "/v1/chat/completions")
    assert status == 200 and headers["x-ratelimit-limit-requests"] == "3000"
    for method, path in (("GET", "/v1/models"), ("GET", usage), ("POST", "/v1/responses/resp_missing/cancel")):
        status, headers, body = await call(stack, method, path)
        assert status == 429 and all(h in headers for h in TRIO) and int(headers["retry-after-ms"]) > 0, path
        assert body["error"]["type"] == "requests" and body["error"]["code"] == "rate_limit_exceeded"
    status, headers, _ = await call(stack, "GET", "/v1/models", org="org-b")
    assert status == 200 and headers["x-ratelimit-limit-requests"] == "1200"
