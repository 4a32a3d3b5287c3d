"""A router whose rate limits live in a Redis that requires a password (as compose and k8s run it): with the
password the limits hold; with a wrong or missing one the limiter counts as unavailable, so requests fail open
or get a 503 as LORASERVE_RATELIMIT_FAIL_OPEN says, never a 500."""
from __future__ import annotations

import pytest

from shared.ratelimit import limiter_for
from tests.fixtures.redis_server import PASSWORD, protected_redis
from tests.integration.inference_router.harness import start_stack
from tests.integration.inference_router.test_rate_limits import BODIES, limits, post


@pytest.fixture
def redis_url():
    with protected_redis() as url:
        yield url


@pytest.fixture
async def stack(tmp_path):
    stack = await start_stack(tmp_path)
    yield stack
    await stack.close()


async def test_with_the_password_two_requests_pass_and_the_third_gets_429(stack, tmp_path, redis_url):
    stack.router.limits = limits(tmp_path, limiter_for(redis_url, PASSWORD), ratelimit_window_seconds=30)
    statuses = [(await post(stack, "/v1/chat/completions"))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert (await post(stack, "/v1/chat/completions", org="org-b"))[0] == 200


@pytest.mark.parametrize("password", ["wrong-password", None])
@pytest.mark.parametrize(("fail_open", "expected"), [(True, 200), (False, 503)])
async def test_a_wrong_or_missing_password_fails_open_or_closed_never_500(stack, tmp_path, redis_url, password,
                                                                          fail_open, expected):
    stack.router.limits = limits(tmp_path, limiter_for(redis_url, password), ratelimit_fail_open=fail_open)
    for path in BODIES:
        status, headers, body = await post(stack, path)
        assert status == expected, (path, body)
        if status == 503:
            assert headers["retry-after"] == "1"
            code = body["error"]["type"] if path == "/v1/messages" else body["error"]["code"]
            assert code in ("overloaded_error", "rate_limiter_unavailable")


async def test_a_password_in_the_url_works_too(stack, tmp_path, redis_url):
    with_password = redis_url.replace("redis://", f"redis://:{PASSWORD}@")
    stack.router.limits = limits(tmp_path, limiter_for(with_password), ratelimit_window_seconds=30,
                                 ratelimit_requests_per_minute=1, ratelimit_fail_open=False)
    statuses = [(await post(stack, "/v1/responses"))[0] for _ in range(2)]
    assert statuses == [200, 429]
