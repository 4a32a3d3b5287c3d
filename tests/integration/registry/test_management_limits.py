"""Management API rate limits on the registry's routes, served with file-ingest in one app as `loraserve dev`
serves them: one counter per org across both services, set per org through the admin API, 429 in OpenAI's
envelope with retry-after and the x-ratelimit-*-requests trio; another org is not limited."""
from __future__ import annotations

TRIO = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")


async def set_management_limit(stack, org: str, per_window: int) -> None:
    put = await stack.http.put(f"/internal/v1/orgs/{org}/limits",
                               json={"management_requests_per_minute": per_window},
                               headers={"x-service-token": stack.platform.settings.service_token})
    assert put.status == 200, await put.text()
    assert (await put.json())["effective"]["management_requests_per_minute"] == per_window


async def test_the_registry_and_file_ingest_count_one_limit_per_org(stack):
    await set_management_limit(stack, "org-a", 3)
    statuses = []
    for path in ("/v1/files", "/v1/loras", "/v1/loras/nobody"):
        response = await stack.http.get(path, headers=stack.auth())
        statuses.append(response.status)
        assert all(h in response.headers for h in TRIO) and response.headers["x-ratelimit-limit-requests"] == "3"
    assert statuses == [200, 200, 404]
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    refused = await stack.http.post("/v1/loras", json={"name": "x"}, headers=stack.auth())
    assert refused.status == 429 and all(h in refused.headers for h in TRIO)
    assert int(refused.headers["retry-after"]) >= 1 and int(refused.headers["retry-after-ms"]) > 0
    error = (await refused.json())["error"]
    assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded" and error["param"] is None
    assert (await stack.http.get("/v1/events", headers=stack.auth())).status == 429
    # org-b keeps the default limit, untouched by org-a's exhaustion
    other = await stack.http.get("/v1/loras", headers=stack.auth("org-b"))
    assert other.status == 200 and other.headers["x-ratelimit-limit-requests"] == "1200"


async def test_an_event_stream_is_counted_when_opened_and_carries_the_headers(stack):
    await set_management_limit(stack, "org-a", 1)
    stream = await stack.http.get("/v1/events", headers=stack.auth())
    try:
        assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.headers["x-ratelimit-remaining-requests"] == "0"
    finally:
        stream.close()
    assert (await stack.http.get("/v1/loras", headers=stack.auth())).status == 429
