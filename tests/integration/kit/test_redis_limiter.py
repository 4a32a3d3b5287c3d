"""The Redis limiter against Debian's redis-server on 127.0.0.1:6379 (`make test` starts it): one limit shared
by two limiter instances (two replicas), and an outage reported as LimiterUnavailable, not an error."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from shared.ratelimit import Limit, LimiterUnavailable
from shared.ratelimit.redis_limiter import RedisLimiter

REDIS_URL = "redis://127.0.0.1:6379/0"
PATIENT_SECONDS = 5.0


@pytest.fixture
async def replicas():
    prefix = f"test:{uuid.uuid4().hex}:"
    # a patient client: the 40 racing acquires below open 40 connections at once, which a loaded 2-CPU machine can
    # take longer for than the production half-second deadline (these tests are about what the scripts decide)
    pair = [RedisLimiter(REDIS_URL, prefix=prefix, timeout=PATIENT_SECONDS) for _ in range(2)]
    yield pair
    for limiter in pair:
        await limiter.close()


def limits(tokens: int = 1) -> list[Limit]:
    return [Limit("requests", "org:a:requests", 10, 1), Limit("tokens", "org:a:tokens", 1000, tokens)]


async def test_two_replicas_racing_share_one_limit(replicas):
    decisions = await asyncio.gather(*(replicas[i % 2].acquire(limits(), 60) for i in range(40)))
    assert sum(d.allowed for d in decisions) == 10
    refused = next(d for d in decisions if not d.allowed)
    assert refused.refused_by()[0].limit.name == "requests" and 59 < refused.retry_after() <= 60


async def test_refused_for_tokens_counts_no_request_and_settling_shows_on_the_other_replica(replicas):
    assert (await replicas[0].acquire(limits(900), 60)).allowed
    assert not (await replicas[1].acquire(limits(200), 60)).allowed
    await replicas[0].settle("org:a:tokens", -500)
    state = {s.limit.name: s for s in (await replicas[1].acquire(limits(200), 60)).states}
    assert state["tokens"].used == 600 and state["requests"].used == 2


async def test_the_window_is_the_keys_ttl(replicas):
    for _ in range(10):
        await replicas[0].acquire(limits(), 0.3)
    refused = await replicas[1].acquire(limits(), 0.3)
    assert not refused.allowed and refused.retry_after() <= 0.3
    await asyncio.sleep(0.35)
    assert (await replicas[1].acquire(limits(), 0.3)).allowed


async def test_an_unreachable_redis_is_reported_as_unavailable():
    limiter = RedisLimiter("redis://127.0.0.1:1/0", timeout=0.2)
    with pytest.raises(LimiterUnavailable):
        await limiter.acquire(limits(), 60)
    with pytest.raises(LimiterUnavailable):
        await limiter.settle("org:a:tokens", 5)
    await limiter.close()
