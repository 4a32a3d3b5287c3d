"""Concurrency leases, in process and in Debian's redis-server (`make test` starts it on 127.0.0.1:6379): two
instances of the Redis one act as two replicas sharing every pool."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from shared.ratelimit import LimiterUnavailable, Pool, renewed
from shared.ratelimit.leases import InProcessLeases
from shared.ratelimit.redis_leases import RedisLeases

REDIS_URL = "redis://127.0.0.1:6379/0"
PATIENT_SECONDS = 5.0


@pytest.fixture(params=["memory", "redis"])
async def replicas(request):
    if request.param == "memory":
        shared = InProcessLeases()
        yield [shared, shared]
        return
    prefix = f"test:{uuid.uuid4().hex}:"
    # a patient client: these tests are about what the scripts decide, not the production half-second deadline
    # (20 racing acquires open 20 connections at once, which a loaded 2-CPU machine once took longer than that for)
    pair = [RedisLeases(REDIS_URL, prefix=prefix, timeout=PATIENT_SECONDS) for _ in range(2)]
    yield pair
    for leases in pair:
        await leases.close()


def streams(limit: int = 3) -> Pool:
    return Pool("streams", "org:a:streams", limit)


async def test_racing_replicas_never_hold_more_than_the_limit(replicas):
    decisions = await asyncio.gather(*(replicas[i % 2].acquire([streams()], f"s{i}", 30) for i in range(20)))
    assert sum(d.granted for d in decisions) == 3
    refused = next(d for d in decisions if not d.granted)
    assert refused.refused() == [(streams(), 3)]


async def test_released_leases_free_their_place_for_the_other_replica(replicas):
    for i in range(3):
        assert (await replicas[0].acquire([streams()], f"s{i}", 30)).granted
    assert not (await replicas[1].acquire([streams()], "late", 30)).granted
    await replicas[0].release([streams().key], "s1")
    assert (await replicas[1].acquire([streams()], "late", 30)).granted


async def test_a_crashed_holders_leases_expire_unless_renewed(replicas):
    assert (await replicas[0].acquire([streams(2)], "crashed", 0.3)).granted
    assert (await replicas[0].acquire([streams(2)], "alive", 0.3)).granted
    await asyncio.sleep(0.2)
    assert await replicas[0].renew([streams().key], "alive", 0.3) == 1
    await asyncio.sleep(0.15)  # "crashed" has expired, "alive" was renewed
    decision = await replicas[1].acquire([streams(2)], "new", 0.3)
    assert decision.granted and decision.used == (1,)
    assert await replicas[0].renew([streams().key], "crashed", 0.3) == 0


async def test_weights_sum_and_a_lease_takes_every_pool_or_none(replicas):
    uploads = Pool("uploads", "org:a:uploads", 5)

    def upload_bytes(weight: int) -> Pool:
        return Pool("upload_bytes", "org:a:upload_bytes", 1000, weight)

    assert (await replicas[0].acquire([uploads, upload_bytes(600)], "u1", 30)).granted
    refused = await replicas[1].acquire([uploads, upload_bytes(500)], "u2", 30)
    assert not refused.granted and refused.refused() == [(upload_bytes(500), 600)]
    # the refused lease took nothing: the count pool still has four places
    decision = await replicas[1].acquire([uploads, upload_bytes(400)], "u3", 30)
    assert decision.granted and decision.used == (1, 600)


async def test_acquiring_a_held_id_again_does_not_count_twice(replicas):
    assert (await replicas[0].acquire([streams(1)], "same", 30)).granted
    assert (await replicas[1].acquire([streams(1)], "same", 30)).granted
    assert not (await replicas[1].acquire([streams(1)], "other", 30)).granted


async def test_renewed_keeps_a_lease_past_its_ttl_and_releases_it_after(replicas):
    assert (await replicas[0].acquire([streams(1)], "long", 0.3)).granted
    async with renewed(replicas[0], [streams().key], "long", 0.3):
        await asyncio.sleep(0.5)
        assert not (await replicas[1].acquire([streams(1)], "other", 0.3)).granted
    assert (await replicas[1].acquire([streams(1)], "other", 0.3)).granted


async def test_an_unreachable_redis_is_reported_not_raised_as_an_error():
    leases = RedisLeases("redis://127.0.0.1:1/0", timeout=0.2)
    try:
        with pytest.raises(LimiterUnavailable):
            await leases.acquire([streams()], "s", 30)
    finally:
        await leases.close()
