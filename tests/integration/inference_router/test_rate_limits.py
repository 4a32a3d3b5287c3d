"""Rate limits on the three inference APIs: 429 in each API's envelope with retry-after and OpenAI's
x-ratelimit-* headers on every response, the SDKs' own retry, one limit for two routers sharing Redis,
and a limiter outage failing open or closed (never a 500). Windows are short so retries take < 1 s."""
from __future__ import annotations

import json
import uuid

import aiohttp
import anthropic
import openai
import pytest
from multidict import CIMultiDict

from services.inference_router.rate_limits import RateLimits
from shared.ratelimit import Limit
from shared.ratelimit.memory import InProcessLimiter
from shared.ratelimit.redis_limiter import RedisLimiter
from shared.settings import Settings
from tests.integration.inference_router.harness import TINY, start_stack, wait_for

WINDOW = 0.8
RATE_HEADERS = [f"x-ratelimit-{part}-{kind}" for kind in ("requests", "tokens")
                for part in ("limit", "remaining", "reset")]
BODIES = {
    "/v1/chat/completions": {"model": TINY, "messages": [{"role": "user", "content": "hi"}]},
    "/v1/responses": {"model": TINY, "input": "hi"},
    "/v1/messages": {"model": TINY, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
}


def limits(tmp_path, limiter=None, **options) -> RateLimits:
    settings = Settings(data_dir=tmp_path, **{"ratelimit_window_seconds": WINDOW, "ratelimit_requests_per_minute": 2,
                                              "ratelimit_tokens_per_minute": 10_000, **options})
    return RateLimits(settings, limiter or InProcessLimiter())


@pytest.fixture
async def stack(tmp_path):
    stack = await start_stack(tmp_path)
    stack.router.limits = limits(tmp_path)
    yield stack
    await stack.close()


async def post(stack, path: str, body: dict | None = None, org: str = "org-a") -> tuple[int, CIMultiDict, dict]:
    headers = {"Authorization": f"Bearer {stack.keys[org]}", "x-api-key": stack.keys[org]}
    async with aiohttp.ClientSession() as session, session.post(
            stack.url(path), json=body or BODIES[path], headers=headers) as response:
        text = await response.text()
        return response.status, response.headers.copy(), json.loads(text) if text.startswith("{") else {}


@pytest.mark.parametrize("path", list(BODIES))
async def test_the_third_request_in_a_window_gets_429_with_the_headers(stack, path):
    for remaining in ("1", "0"):
        status, headers, _ = await post(stack, path)
        assert status == 200 and all(h in headers for h in RATE_HEADERS)
        assert headers["x-ratelimit-limit-requests"] == "2" and headers["x-ratelimit-remaining-requests"] == remaining
    status, headers, body = await post(stack, path)
    assert status == 429 and all(h in headers for h in RATE_HEADERS)
    assert 1 <= int(headers["retry-after"]) and 0 < int(headers["retry-after-ms"]) <= WINDOW * 1000
    assert headers["x-ratelimit-remaining-requests"] == "0" and headers["x-ratelimit-reset-requests"].endswith("ms")
    if path == "/v1/messages":
        assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    else:
        assert body["error"]["type"] == "requests" and body["error"]["code"] == "rate_limit_exceeded"
    other_org, _, _ = await post(stack, path, org="org-b")
    assert other_org == 200


async def test_a_streamed_answer_carries_the_headers(stack):
    status, headers, _ = await post(stack, "/v1/chat/completions", {**BODIES["/v1/chat/completions"], "stream": True})
    assert status == 200 and headers["x-ratelimit-remaining-requests"] == "1"


async def test_tokens_are_limited_and_settled_with_the_workers_usage(stack, tmp_path):
    stack.router.limits = limits(tmp_path, ratelimit_requests_per_minute=None, ratelimit_tokens_per_minute=40)
    status, headers, body = await post(stack, "/v1/chat/completions", prompt(25))
    assert status == 200 and headers["x-ratelimit-remaining-tokens"] == "15"
    assert "x-ratelimit-limit-requests" not in headers
    used = body["usage"]["total_tokens"]
    # the worker's usage replaced the estimate of 25
    status, headers, _ = await post(stack, "/v1/chat/completions", prompt(0))
    assert int(headers["x-ratelimit-remaining-tokens"]) == 40 - used
    status, headers, body = await post(stack, "/v1/chat/completions", prompt(40 - used + 1))
    assert status == 429 and body["error"]["type"] == "tokens" and "x-should-retry" not in headers


async def test_a_background_responses_tokens_are_settled_once_when_its_end_is_folded(stack, tmp_path):
    stack.router.limits = limits(tmp_path, ratelimit_requests_per_minute=None, ratelimit_tokens_per_minute=40,
                                 ratelimit_window_seconds=60)
    body = {"model": TINY, "input": "x" * 13 * 25, "background": True}
    status, headers, created = await post(stack, "/v1/responses", body)
    assert status == 200 and headers["x-ratelimit-remaining-tokens"] == "15"
    await wait_for(lambda: (created["id"], "completed") in stack.folded)
    stored = await stack.router.responses.get("org-a", created["id"])
    used = stored["usage"]["input_tokens"] + stored["usage"]["output_tokens"]
    assert used != 25 and await tokens_counted(stack) == used  # the estimate of 25 became what the worker used
    # the same end redelivered is folded again but settles nothing more
    job = next(j for j in stack.worker.jobs if j.response_id == created["id"])
    await stack.worker.publish_status(job, "completed", 2, output_text="x", finish_reason="stop",
                                      prompt_tokens=1, completion_tokens=1)
    await wait_for(lambda: stack.folded.count((created["id"], "completed")) == 2)
    assert await tokens_counted(stack) == used


async def tokens_counted(stack) -> int:
    """What org A's token counter holds, read with a cost of nothing."""
    decision = await stack.router.limits.limiter.acquire([Limit("tokens", "org:org-a:tokens", 40, 0)], 60)
    return decision.states[0].used


def prompt(at_least_tokens: int) -> dict:
    """A chat body whose prompt the router estimates at `at_least_tokens` (13 characters a token)."""
    return {"model": TINY, "messages": [{"role": "user", "content": "x" * 13 * at_least_tokens}]}


async def test_a_request_no_window_can_hold_is_not_retried(stack, tmp_path):
    stack.router.limits = limits(tmp_path, ratelimit_tokens_per_minute=3)
    status, headers, body = await post(stack, "/v1/chat/completions",
                                       {"model": TINY, "messages": [{"role": "user", "content": "y" * 13 * 4}]})
    assert status == 429 and headers["x-should-retry"] == "false" and "too large" in body["error"]["message"]


async def test_a_per_key_limit(stack, tmp_path):
    stack.router.limits = limits(tmp_path, ratelimit_requests_per_minute=None, ratelimit_key_requests_per_minute=1)
    assert (await post(stack, "/v1/responses"))[0] == 200
    status, _, body = await post(stack, "/v1/responses")
    assert status == 429 and "API key" in body["error"]["message"]


async def test_the_sdks_retry_after_retry_after_and_succeed(stack, tmp_path):
    stack.router.limits = limits(tmp_path, ratelimit_requests_per_minute=1)
    oai = openai.AsyncOpenAI(base_url=stack.url(), api_key=stack.keys["org-a"], max_retries=1)
    first = await oai.chat.completions.with_raw_response.create(model=TINY, messages=[{"role": "user", "content": "a"}])
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    retried = await oai.responses.with_raw_response.create(model=TINY, input="b")
    assert retried.retries_taken == 1 and retried.parse().output_text == "echo: b"
    no_retry = openai.AsyncOpenAI(base_url=stack.url(), api_key=stack.keys["org-a"], max_retries=0)
    with pytest.raises(openai.RateLimitError):
        await no_retry.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "e"}])
    ant = anthropic.AsyncAnthropic(base_url=stack.url("/"), api_key=stack.keys["org-b"], max_retries=1)
    await ant.messages.create(model=TINY, max_tokens=8, messages=[{"role": "user", "content": "c"}])
    message = await ant.messages.with_raw_response.create(model=TINY, max_tokens=8,
                                                          messages=[{"role": "user", "content": "d"}])
    assert message.retries_taken == 1 and (await message.parse()).content[0].text == "echo: d"


async def test_two_routers_sharing_redis_enforce_one_limit(tmp_path):
    prefix = f"test:{uuid.uuid4().hex}:"
    stacks = [await start_stack(tmp_path / str(i)) for i in range(2)]
    try:
        for i, stack in enumerate(stacks):
            stack.router.limits = limits(tmp_path, RedisLimiter("redis://127.0.0.1:6379/0", prefix=prefix),
                                         ratelimit_window_seconds=30)
        statuses = [(await post(stacks[i % 2], "/v1/chat/completions"))[0] for i in range(4)]
        assert statuses == [200, 200, 429, 429]
    finally:
        for stack in stacks:
            await stack.close()


@pytest.mark.parametrize(("fail_open", "expected"), [(True, 200), (False, 503)])
async def test_a_redis_outage_fails_open_or_closed_never_500(stack, tmp_path, fail_open, expected):
    stack.router.limits = limits(tmp_path, RedisLimiter("redis://127.0.0.1:1/0", timeout=0.2),
                                 ratelimit_fail_open=fail_open)
    for path in BODIES:
        status, headers, body = await post(stack, path)
        assert status == expected
        if status == 503:
            assert headers["retry-after"] == "1"
            code = body["error"]["type"] if path == "/v1/messages" else body["error"]["code"]
            assert code in ("overloaded_error", "rate_limiter_unavailable")
