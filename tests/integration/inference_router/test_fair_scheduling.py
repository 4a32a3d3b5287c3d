"""Fair scheduling at the router: an org's flood waits behind its own requests, never another org's.

The worker double holds background jobs until released, so what reaches the queue is visible in
`worker.jobs`: with an org cap of 2, a flood of ten puts two on the bus and another org's jobs go next.
"""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from shared.quotas import OrgLimits
from tests.integration.inference_router.harness import TINY, start_stack, wait_for

FAIR = {"fair_org_inflight_jobs": 2, "fair_model_inflight_jobs": 64}


@pytest.fixture
async def stack(tmp_path):
    stack = await start_stack(tmp_path, timeout=2.0, hold_background=True, settings=FAIR)
    yield stack
    await stack.close()


async def post(stack, org: str, path: str, body: dict) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as session:
        response = await session.post(stack.url(path), json=body,
                                      headers={"Authorization": f"Bearer {stack.keys[org]}"})
        await response.read()
        return response


async def background(stack, org: str, text: str) -> str:
    response = await post(stack, org, "/v1/responses", {"model": TINY, "input": text, "background": True})
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["status"] == "queued"
    return body["id"]


def published_by(stack, org: str) -> list[str]:
    return [job.response_id for job in stack.worker.jobs if job.org_id == org]


async def statuses(stack, org: str, ids: list[str]) -> list[str]:
    return [(await stack.router.responses.get(org, rid))["status"] for rid in ids]


async def test_a_flood_waits_behind_its_own_requests_while_another_org_goes_straight_through(stack):
    flood = [await background(stack, "org-a", f"flood {i}") for i in range(10)]
    await wait_for(lambda: len(stack.worker.jobs) == 2)
    victim = await background(stack, "org-b", "hello")
    await wait_for(lambda: victim in published_by(stack, "org-b"))
    chat = await post(stack, "org-b", "/v1/chat/completions",
                      {"model": TINY, "messages": [{"role": "user", "content": "sync"}]})
    assert chat.status == 200  # org A's eight waiting jobs are not ahead of it
    assert published_by(stack, "org-a") == flood[:2]
    assert await statuses(stack, "org-a", flood[2:]) == ["queued"] * 8

    stack.worker.released.set()  # the worker finishes what it holds; each end frees a place for the next
    await wait_for(lambda: len(published_by(stack, "org-a")) == 10)
    await wait_for(lambda: stack.folded.count((flood[-1], "completed")) == 1)
    assert published_by(stack, "org-a") == flood  # in order, within the org


async def test_an_operator_override_raises_one_orgs_cap(stack):
    await stack.platform.identity.set_limits("org-a", OrgLimits(inflight_jobs=5))
    for i in range(8):
        await background(stack, "org-a", f"job {i}")
    await wait_for(lambda: len(published_by(stack, "org-a")) == 5)
    await asyncio.sleep(0.3)
    assert len(published_by(stack, "org-a")) == 5


async def test_a_response_cancelled_while_it_waits_is_never_published(stack):
    ids = [await background(stack, "org-a", f"job {i}") for i in range(3)]
    await wait_for(lambda: len(stack.worker.jobs) == 2)
    cancel = await post(stack, "org-a", f"/v1/responses/{ids[2]}/cancel", {})
    assert cancel.status == 200 and (await cancel.json())["status"] == "cancelled"
    stack.worker.released.set()
    await wait_for(lambda: stack.folded.count((ids[1], "completed")) == 1)
    await asyncio.sleep(0.3)
    assert published_by(stack, "org-a") == ids[:2]


async def test_a_sync_request_waits_for_its_orgs_turn_and_gives_up_with_a_503(stack):
    for i in range(2):
        await background(stack, "org-a", f"job {i}")
    await wait_for(lambda: len(stack.worker.jobs) == 2)
    refused = await post(stack, "org-a", "/v1/chat/completions",
                         {"model": TINY, "messages": [{"role": "user", "content": "sync"}]})
    assert refused.status == 503
    assert (await refused.json())["error"]["code"] == "org_queue_timeout"
    assert len(stack.worker.jobs) == 2  # it never reached the queue


async def test_waiting_jobs_of_a_router_that_stopped_are_taken_over_by_another(stack, tmp_path):
    from services.inference_router.app import router_from

    ids = [await background(stack, "org-a", f"job {i}") for i in range(4)]
    await wait_for(lambda: len(stack.worker.jobs) == 2)
    await stack.router.background.close()  # this router "crashed": its waiting jobs' claims are not renewed
    await stack.router.responses.responses.update_many({"held": {"$exists": True}},
                                                       {"$set": {"held.claimed_until": 0}})
    other = router_from(stack.platform)
    assert await other.background.maintain_once() == 2
    stack.worker.released.set()
    await wait_for(lambda: len(published_by(stack, "org-a")) == 4)
    assert sorted(published_by(stack, "org-a")) == sorted(ids)
    await other.background.close()
    await other.fair.close()


async def test_too_many_waiting_requests_get_a_429(tmp_path):
    stack = await start_stack(tmp_path, hold_background=True, settings={**FAIR, "fair_org_queue": 3})
    try:
        for i in range(5):
            await background(stack, "org-a", f"job {i}")
        refused = await post(stack, "org-a", "/v1/responses", {"model": TINY, "input": "x", "background": True})
        assert refused.status == 429 and refused.headers["retry-after"] == "1"
        assert (await refused.json())["error"]["code"] == "rate_limit_exceeded"
        assert (await post(stack, "org-b", "/v1/responses",
                           {"model": TINY, "input": "x", "background": True})).status == 200
    finally:
        await stack.close()


async def test_when_the_model_is_full_freed_places_go_round_the_orgs_not_first_come_first_served(tmp_path):
    stack = await start_stack(tmp_path, hold_background=True,
                              settings={"fair_org_inflight_jobs": 10, "fair_model_inflight_jobs": 2,
                                        "fair_quantum_tokens": 1})
    try:
        flood = [await background(stack, "org-a", f"flood {i}") for i in range(6)]
        await wait_for(lambda: len(stack.worker.jobs) == 2)
        victim = await background(stack, "org-b", "hello")
        for freed in range(2):  # org A held the turn: it may use one more place, then it is org B's turn
            job = stack.worker.jobs[freed]
            await stack.worker.publish_status(job, "completed", 2, output_text="done", finish_reason="stop",
                                              prompt_tokens=1, completion_tokens=1)
            await wait_for(lambda n=freed: len(stack.worker.jobs) == 3 + n)
        assert victim in [job.response_id for job in stack.worker.jobs[2:4]]  # not 7th, after org A's flood
        assert published_by(stack, "org-a") == flood[:3]
    finally:
        await stack.close()
