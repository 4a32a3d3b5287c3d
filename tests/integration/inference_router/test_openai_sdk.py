"""Chat Completions and Responses through the official openai SDK, unchanged."""
from __future__ import annotations

import openai
import pytest

from shared.contracts import topology
from tests.integration.inference_router.harness import TINY, start_stack, wait_for

LORA = {"lora": "funny", "completion_window": "priority"}


@pytest.fixture
async def stack(tmp_path):
    stack = await start_stack(tmp_path)
    yield stack
    await stack.close()


def client(stack, org: str = "org-a") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stack.url(), api_key=stack.keys[org], max_retries=0)


async def test_chat_completion_with_a_lora(stack):
    completion = await client(stack).chat.completions.create(
        model=TINY, messages=[{"role": "user", "content": "hello there"}], extra_body={"metadata": LORA})
    assert completion.choices[0].message.content == "echo: hello there via funny"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 5
    job = stack.worker.jobs[-1]
    assert job.adapter.name == "funny" and job.org_id == "org-a"
    assert stack.worker.priorities[-1] == topology.PRIORITY_BY_WINDOW["priority"]


async def test_chat_completion_base_model_defaults_to_asap(stack):
    completion = await client(stack).chat.completions.create(
        model=TINY, messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "echo: hi"
    assert stack.worker.jobs[-1].adapter is None
    assert stack.worker.priorities[-1] == topology.PRIORITY_BY_WINDOW["asap"]


async def test_chat_stream_with_usage(stack):
    stream = await client(stack).chat.completions.create(
        model=TINY, messages=[{"role": "user", "content": "one two three"}], stream=True,
        stream_options={"include_usage": True}, extra_body={"metadata": LORA})
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three via funny"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 6


async def test_chat_stream_helper(stack):
    async with client(stack).chat.completions.stream(
            model=TINY, messages=[{"role": "user", "content": "streamed"}]) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.content == "echo: streamed"


async def test_responses_create_then_retrieve(stack):
    api = client(stack)
    response = await api.responses.create(model=TINY, input="what now", instructions="answer",
                                          max_output_tokens=50, metadata=LORA)
    assert response.status == "completed" and response.output_text == "echo: what now via funny"
    assert stack.worker.jobs[-1].messages[0].role == "system"
    again = await api.responses.retrieve(response.id)
    assert again.output_text == response.output_text and again.metadata["lora"] == "funny"


async def test_responses_input_items_and_incomplete(stack):
    response = await client(stack).responses.create(
        model=TINY, max_output_tokens=2,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "a b c d"}]}])
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "echo: a"


async def test_responses_stream_helper(stack):
    async with client(stack).responses.stream(model=TINY, input="stream me", metadata=LORA) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == "echo: stream me via funny"


async def test_background_response_is_queued_then_completes(stack):
    api = client(stack)
    created = await api.responses.create(model=TINY, input="later", background=True, metadata=LORA)
    assert created.status == "queued" and created.background is True
    await wait_for(lambda: any(j.response_id == created.id for j in stack.worker.jobs))
    for _ in range(500):
        done = await api.responses.retrieve(created.id)
        if done.status == "completed":
            break
    assert done.status == "completed" and done.output_text == "echo: later via funny"
    assert stack.worker.jobs[-1].background and stack.worker.jobs[-1].deadline is not None


async def test_background_cancel(tmp_path):
    stack = await start_stack(tmp_path, hold_background=True)
    try:
        api = client(stack)
        created = await api.responses.create(model=TINY, input="slow", background=True, metadata=LORA)
        await wait_for(lambda: bool(stack.worker.jobs))
        cancelled = await api.responses.cancel(created.id)
        assert cancelled.status == "cancelled"
        await wait_for(lambda: any(c.response_id == created.id for c in stack.worker.cancels))
        await wait_for(lambda: (created.id, "completed") in stack.folded)  # the worker's late result
        assert (await api.responses.retrieve(created.id)).status == "cancelled"
        with pytest.raises(openai.BadRequestError, match="background"):
            sync = await api.responses.create(model=TINY, input="now")
            await api.responses.cancel(sync.id)
    finally:
        await stack.close()


async def test_another_orgs_response_is_not_found(stack):
    response = await client(stack, "org-a").responses.create(model=TINY, input="mine")
    with pytest.raises(openai.NotFoundError):
        await client(stack, "org-b").responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        await client(stack, "org-b").responses.cancel(response.id)


async def test_models_list_and_retrieve(stack):
    api = client(stack)
    models = [m async for m in api.models.list()]
    assert {m.id for m in models} == {TINY, "moonshotai/Kimi-K2.6"}
    kimi = await api.models.retrieve("moonshotai/Kimi-K2.6")
    assert kimi.owned_by == "moonshotai" and kimi.max_rank == 32 and kimi.target_policy == "all"
    with pytest.raises(openai.NotFoundError):
        await api.models.retrieve("nobody/nothing")


async def test_the_callers_request_id_rides_the_stream_and_the_job(stack):
    api = client(stack).with_options(default_headers={"x-request-id": "corr-abc-123"})
    stream = await api.chat.completions.with_raw_response.create(
        model=TINY, messages=[{"role": "user", "content": "hi"}], stream=True, extra_body={"metadata": LORA})
    assert stream.headers["x-request-id"] == "corr-abc-123"
    async for _ in stream.parse():
        pass
    assert stack.worker.correlation_ids[-1] == "corr-abc-123"
