"""Management API rate limits on file-ingest's routes: requests per window per org, 429 in OpenAI's envelope with
retry-after and the x-ratelimit-*-requests trio, the openai SDK retrying after retry-after, per-org overrides from
`admin orgs set-limits`, and a limiter outage failing open or closed (never a 500). Windows are short."""
from __future__ import annotations

import asyncio

import openai
import pytest

from shared.cli.main import main

WINDOW = 0.8
TRIO = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def limited(make_service, per_window: int = 2, **options):
    return make_service(ratelimit_management_requests_per_minute=per_window, ratelimit_window_seconds=WINDOW,
                        **options)


async def test_the_third_request_in_a_window_gets_429_with_the_headers(make_service):
    svc = await limited(make_service)
    upload = {"bytes": 3, "filename": "a.json", "mime_type": "application/json", "purpose": "lora"}
    first = await svc.http.get("/v1/files", headers=svc.auth())
    second = await svc.http.post("/v1/uploads", json=upload, headers=svc.auth())
    for response, remaining in ((first, "1"), (second, "0")):
        assert response.status == 200 and all(h in response.headers for h in TRIO)
        assert response.headers["x-ratelimit-limit-requests"] == "2"
        assert response.headers["x-ratelimit-remaining-requests"] == remaining
    upload_id = (await second.json())["id"]
    refused = await svc.http.post(f"/v1/uploads/{upload_id}/cancel", headers=svc.auth())
    assert refused.status == 429 and all(h in refused.headers for h in TRIO)
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert int(refused.headers["retry-after"]) >= 1 and 0 < int(refused.headers["retry-after-ms"]) <= WINDOW * 1000
    error = (await refused.json())["error"]
    assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"
    assert "management API requests limit 2" in error["message"]
    # another org has its own counter
    assert (await svc.http.get("/v1/files", headers=svc.auth("org-b"))).status == 200


async def test_health_metrics_internal_and_unknown_paths_are_not_counted(make_service):
    svc = await limited(make_service, per_window=1)
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        response = await svc.http.get(path)
        assert response.status == 200 and "x-ratelimit-limit-requests" not in response.headers, path
    internal = await svc.http.get("/internal/v1/files/file-none", headers={"x-service-token": "test-service-token"})
    assert internal.status < 500 and "x-ratelimit-limit-requests" not in internal.headers
    assert (await svc.http.get("/v1/no-such-route", headers=svc.auth())).status == 404
    assert (await svc.http.delete("/v1/files", headers=svc.auth())).status == 405
    assert (await svc.http.get("/v1/files", headers=svc.auth())).status == 200
    assert (await svc.http.get("/v1/files", headers=svc.auth())).status == 429


async def test_the_openai_sdk_retries_after_retry_after_and_succeeds(make_service):
    svc = await limited(make_service, per_window=1)
    sdk = openai.AsyncOpenAI(base_url=str(svc.server.make_url("/v1")), api_key=svc.keys["org-a"], max_retries=1)
    try:
        first = await sdk.files.with_raw_response.list()
        assert first.headers["x-ratelimit-remaining-requests"] == "0"
        retried = await sdk.files.with_raw_response.list()
        assert retried.retries_taken == 1 and retried.http_response.status_code == 200
    finally:
        await sdk.close()
    with pytest.raises(openai.RateLimitError) as raised:
        await svc.sdk().files.list()
    assert raised.value.code == "rate_limit_exceeded"


async def test_an_orgs_override_from_the_cli_applies_to_that_org_alone(make_service, monkeypatch):
    svc = await make_service(ratelimit_management_requests_per_minute=100)
    monkeypatch.setenv("LORASERVE_KEYS_FILE", str(svc.platform.settings.keys_path))
    argv = ["admin", "orgs", "set-limits", "org-a", "--management-requests-per-minute", "1"]
    assert await asyncio.to_thread(main, argv) == 0
    first = await svc.http.get("/v1/files", headers=svc.auth())
    assert first.status == 200 and first.headers["x-ratelimit-limit-requests"] == "1"
    assert (await svc.http.get("/v1/files", headers=svc.auth())).status == 429
    other = await svc.http.get("/v1/files", headers=svc.auth("org-b"))
    assert other.status == 200 and other.headers["x-ratelimit-limit-requests"] == "100"


@pytest.mark.parametrize(("fail_open", "expected"), [(True, 200), (False, 503)])
async def test_a_redis_outage_fails_open_or_closed_never_500(make_service, fail_open, expected):
    svc = await limited(make_service, redis_url=UNREACHABLE_REDIS, ratelimit_fail_open=fail_open)
    for _ in range(3):  # past the limit of 2: nothing is counted while Redis is away
        response = await svc.http.get("/v1/files", headers=svc.auth())
        assert response.status == expected and "x-ratelimit-limit-requests" not in response.headers
    if expected == 503:
        assert response.headers["retry-after"] == "1"
        assert (await response.json())["error"]["code"] == "rate_limiter_unavailable"
