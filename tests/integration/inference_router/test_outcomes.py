"""Every way a background Response ends is announced once as the public response.<status> event, carrying
the Response as GET /v1/responses/{id} shows it; a crash between the write and the publish loses nothing."""
from __future__ import annotations

import time

import aiohttp
import openai
import pytest

from services.inference_router.recovery import fail_interrupted
from services.inference_router.response_events import expire_once
from shared.bus.base import DeadLetter
from shared.contracts import topology
from shared.contracts.messages import RESPONSE_OUTCOMES, ResponseStatusChanged
from tests.fixtures.bus_faults import refuse_once
from tests.fixtures.inbox import Inbox
from tests.integration.inference_router.harness import TINY, TINY_SLUG, start_stack, wait_for

OUTCOME_KEYS = [f"org.*.response.{status}" for status in RESPONSE_OUTCOMES]


def oai(stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stack.url(), api_key=stack.keys["org-a"], max_retries=0)


async def outcomes_of(stack) -> Inbox:
    inbox = Inbox()
    await stack.platform.bus.subscribe(topology.EVENTS, OUTCOME_KEYS, inbox)
    return inbox


async def shown(stack, response_id: str) -> dict:
    """The Response as a client reads it."""
    headers = {"Authorization": f"Bearer {stack.keys['org-a']}"}
    async with aiohttp.ClientSession() as session, \
            session.get(stack.url(f"/v1/responses/{response_id}"), headers=headers) as resp:
        assert resp.status == 200
        return await resp.json()


async def assert_announced(stack, inbox: Inbox, response_id: str, status: str):
    event = (await inbox.next()).event
    assert (event.type, event.subject) == (f"response.{status}", response_id)
    assert event.data == {"org_id": "org-a", "response": await shown(stack, response_id)}
    return event


async def until_marker(stack, inbox: Inbox) -> list:
    """The outcome events before a fresh background Response's (they arrive in publish order)."""
    marker = await oai(stack).responses.create(model=TINY, input="marker", background=True)
    seen = []
    while (event := (await inbox.next()).event).subject != marker.id:
        seen.append(event)
    return seen


@pytest.fixture
async def stack(tmp_path):
    stack = await start_stack(tmp_path)
    yield stack
    await stack.close()


@pytest.fixture
async def idle(tmp_path):
    stack = await start_stack(tmp_path, worker=False)
    yield stack
    await stack.close()


async def test_a_completed_background_response_is_announced_once_even_when_its_end_is_redelivered(stack):
    inbox = await outcomes_of(stack)
    await oai(stack).responses.create(model=TINY, input="not background")
    created = await oai(stack).responses.create(model=TINY, input="later", background=True)
    event = await assert_announced(stack, inbox, created.id, "completed")
    assert event.data["response"]["output"][0]["content"][0]["text"] == "echo: later"

    job = next(j for j in stack.worker.jobs if j.response_id == created.id)
    await stack.worker.publish_status(job, "completed", 2, output_text="echo: later", finish_reason="stop")
    await wait_for(lambda: stack.folded.count((created.id, "completed")) == 2)
    assert await until_marker(stack, inbox) == []


async def test_a_cancelled_background_response_is_announced_and_its_late_result_is_not(tmp_path):
    stack = await start_stack(tmp_path, hold_background=True)
    try:
        inbox = await outcomes_of(stack)
        created = await oai(stack).responses.create(model=TINY, input="slow", background=True)
        await wait_for(lambda: bool(stack.worker.jobs))
        assert (await oai(stack).responses.cancel(created.id)).status == "cancelled"
        await assert_announced(stack, inbox, created.id, "cancelled")
        await wait_for(lambda: (created.id, "completed") in stack.folded)  # the worker's late result
        assert await until_marker(stack, inbox) == []
    finally:
        await stack.close()


async def test_a_response_past_its_deadline_is_announced_failed(idle):
    inbox = await outcomes_of(idle)
    created = await oai(idle).responses.create(model=TINY, input="later", background=True,
                                               metadata={"completion_window": "flex"})
    doc = await idle.router.responses.get("org-a", created.id)
    assert await expire_once(idle.router, now=doc["deadline"] + 1) == 1
    event = await assert_announced(idle, inbox, created.id, "failed")
    assert event.data["response"]["error"]["code"] == "deadline_exceeded"


async def test_a_dead_lettered_job_is_announced_failed(idle):
    inbox = await outcomes_of(idle)

    async def refusing_worker(delivery) -> None:
        raise DeadLetter("not for this pool")

    await idle.platform.bus.consume(topology.inference_queue(TINY_SLUG), refusing_worker)
    created = await oai(idle).responses.create(model=TINY, input="hello", background=True)
    event = await assert_announced(idle, inbox, created.id, "failed")
    assert event.data["response"]["error"]["code"] == "job_dead_lettered"


async def test_a_response_failed_by_a_restart_and_an_incomplete_one_are_announced(idle):
    inbox = await outcomes_of(idle)
    lost = await oai(idle).responses.create(model=TINY, input="lost", background=True)
    cut = await oai(idle).responses.create(model=TINY, input="long", background=True)
    await idle.platform.bus.publish(ResponseStatusChanged(
        response_id=cut.id, org_id="org-a", model=TINY, status="incomplete", seq=2, output_text="lo",
        finish_reason="length", prompt_tokens=1, completion_tokens=1), source="test/worker")
    event = await assert_announced(idle, inbox, cut.id, "incomplete")
    assert event.data["response"]["incomplete_details"] == {"reason": "max_output_tokens"}

    assert await fail_interrupted(idle.router.responses) == 1
    event = await assert_announced(idle, inbox, lost.id, "failed")
    assert event.data["response"]["error"]["code"] == "server_restarted"


async def test_an_outcome_whose_publish_failed_goes_out_once_later_with_the_same_id(stack, monkeypatch):
    inbox = await outcomes_of(stack)
    failed = refuse_once(stack.platform.bus, monkeypatch, "response.completed")
    created = await oai(stack).responses.create(model=TINY, input="later", background=True)
    await wait_for(lambda: (created.id, "completed") in stack.folded)
    assert (await shown(stack, created.id))["status"] == "completed" and failed

    assert await stack.router.responses.outbox.flush(older_than=time.time() + 1) == 1
    assert await stack.router.responses.outbox.flush(older_than=time.time() + 1) == 0
    event = await assert_announced(stack, inbox, created.id, "completed")
    assert (event.id, event.time) == (failed[0].id, failed[0].time)
    assert await until_marker(stack, inbox) == []
