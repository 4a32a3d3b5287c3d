"""No worker, a worker that dies mid-stream, a client that goes away, and events for responses the router never saw."""
from __future__ import annotations

import aiohttp
import anthropic
import openai
import pytest

from services.inference_router.response_events import expire_once
from shared.contracts import topology
from shared.contracts.messages import ChatMessage, ResponseStatusChanged
from tests.integration.inference_router.harness import TINY, TINY_SLUG, start_stack, wait_for

HELLO = [{"role": "user", "content": "one two three four five"}]


def oai(stack, org="org-a") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stack.url(), api_key=stack.keys[org], max_retries=0)


def claude(stack) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=stack.url(""), api_key=stack.keys["org-a"], max_retries=0)


@pytest.fixture
async def no_worker(tmp_path):
    stack = await start_stack(tmp_path, timeout=0.3, worker=False)
    yield stack
    await stack.close()


@pytest.fixture
async def dying_worker(tmp_path):
    stack = await start_stack(tmp_path, timeout=0.5, go_silent_after=2)
    yield stack
    await stack.close()


async def test_no_worker_is_a_503(no_worker):
    with pytest.raises(openai.APIStatusError) as caught:
        await oai(no_worker).chat.completions.create(model=TINY, messages=HELLO)
    assert caught.value.status_code == 503 and caught.value.body["code"] == "no_worker_available"
    with pytest.raises(openai.APIStatusError) as caught:
        await oai(no_worker).chat.completions.create(model=TINY, messages=HELLO, stream=True)
    assert caught.value.status_code == 503
    with pytest.raises(anthropic.APIStatusError) as caught:
        await claude(no_worker).messages.create(model=TINY, max_tokens=8, messages=HELLO)
    assert caught.value.status_code == 503 and caught.value.body["error"]["type"] == "overloaded_error"


async def test_a_background_response_waits_for_a_worker(no_worker):
    created = await oai(no_worker).responses.create(model=TINY, input="later", background=True)
    assert created.status == "queued"
    assert (await oai(no_worker).responses.retrieve(created.id)).status == "queued"


async def test_chat_stream_from_a_dying_worker_raises_in_the_sdk(dying_worker):
    stream = await oai(dying_worker).chat.completions.create(model=TINY, messages=HELLO, stream=True)
    received = []
    with pytest.raises(openai.APIError, match="stopped answering"):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "echo: one"
    await wait_for(lambda: len(dying_worker.worker.cancels) == 1)


async def test_responses_stream_from_a_dying_worker_ends_failed(dying_worker):
    async with oai(dying_worker).responses.stream(model=TINY, input="one two") as stream:
        events = [event async for event in stream]
    assert events[0].type == "response.created" and events[-1].type == "response.failed"
    assert events[-1].response.error.code == "worker_lost"


async def test_messages_stream_from_a_dying_worker_raises(dying_worker):
    with pytest.raises(anthropic.APIStatusError, match="stopped answering"):
        async with claude(dying_worker).messages.stream(model=TINY, max_tokens=64, messages=HELLO) as stream:
            async for _ in stream.text_stream:
                pass


async def test_a_client_that_goes_away_cancels_its_job(tmp_path):
    stack = await start_stack(tmp_path, delta_pause=0.05)
    try:
        body = {"model": TINY, "messages": [{"role": "user", "content": "word " * 40}], "stream": True}
        async with aiohttp.ClientSession(headers={"x-api-key": stack.keys["org-a"]}) as session, \
                session.post(stack.url("/v1/chat/completions"), json=body) as response:
            await response.content.readline()
        await wait_for(lambda: len(stack.worker.cancels) == 1)
        assert stack.worker.cancels[0].response_id == stack.worker.jobs[0].response_id
    finally:
        await stack.close()


async def test_validation_responses_are_stored_from_their_events(tmp_path):
    stack = await start_stack(tmp_path)
    try:
        bus, lora_id = stack.platform.bus, stack.loras["funny"]["lora"]["id"]
        common = {"response_id": "resp_validation1", "org_id": "org-a", "model": TINY, "lora_id": lora_id,
                  "input": [ChatMessage(role="user", content="validate me")]}
        await bus.publish(ResponseStatusChanged(**common, status="completed", seq=2, output_text="fine",
                                                prompt_tokens=3, completion_tokens=1), source="test/worker")
        await bus.publish(ResponseStatusChanged(**common, status="in_progress", seq=1), source="test/worker")
        await wait_for(lambda: len(stack.folded) == 2)
        response = await oai(stack).responses.retrieve("resp_validation1")
        assert response.status == "completed" and response.output_text == "fine"
        assert response.usage.total_tokens == 4
        with pytest.raises(openai.NotFoundError):
            await oai(stack, "org-b").responses.retrieve("resp_validation1")
    finally:
        await stack.close()


async def test_background_responses_survive_a_router_restart(tmp_path):
    first = await start_stack(tmp_path, worker=False)
    created = await oai(first).responses.create(model=TINY, input="later", background=True)
    await first.close()
    second = await start_stack(tmp_path, worker=False)
    try:
        second.keys = first.keys
        assert (await oai(second).responses.retrieve(created.id)).status == "queued"
    finally:
        await second.close()


async def test_a_background_response_past_its_deadline_fails(tmp_path):
    stack = await start_stack(tmp_path, worker=False)
    try:
        worker = stack.worker
        await stack.platform.bus.subscribe(topology.cancels_exchange(TINY_SLUG), [""], worker.on_cancel)
        created = await oai(stack).responses.create(
            model=TINY, input="later", background=True, metadata={"completion_window": "flex"})
        doc = await stack.router.responses.get("org-a", created.id)
        assert await expire_once(stack.router, now=doc["deadline"] - 1) == 0
        assert await expire_once(stack.router, now=doc["deadline"] + 1) == 1
        expired = await oai(stack).responses.retrieve(created.id)
        assert expired.status == "failed" and expired.error.code == "deadline_exceeded"
        await wait_for(lambda: [c.response_id for c in worker.cancels] == [created.id])
    finally:
        await stack.close()


async def test_a_silent_stream_ends_after_the_stream_idle_timeout_not_the_sync_one(tmp_path):
    stack = await start_stack(tmp_path, timeout=60, stream_idle_timeout=0.4, go_silent_after=2)
    try:
        stream = await oai(stack).chat.completions.create(model=TINY, messages=HELLO, stream=True)
        with pytest.raises(openai.APIError, match="stopped answering for 0.4 seconds"):
            async for _ in stream:
                pass
    finally:
        await stack.close()
