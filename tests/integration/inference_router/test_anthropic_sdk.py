"""Messages through the official anthropic SDK, unchanged (x-api-key auth, its envelope, its stream helper)."""
from __future__ import annotations

import anthropic
import pytest

from tests.integration.inference_router.harness import TINY, start_stack

LORA = {"lora": "funny", "completion_window": "priority"}


@pytest.fixture
async def stack(tmp_path):
    stack = await start_stack(tmp_path)
    yield stack
    await stack.close()


def client(stack, org: str = "org-a") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=stack.url(""), api_key=stack.keys[org], max_retries=0)


async def test_messages_create_with_a_lora(stack):
    message = await client(stack).messages.create(
        model=TINY, max_tokens=64, system="be kind", metadata=LORA,
        messages=[{"role": "user", "content": "hello"}])
    assert message.content[0].text == "echo: hello via funny"
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 4
    assert [m.role for m in stack.worker.jobs[-1].messages] == ["system", "user"]


async def test_messages_max_tokens_stop_reason(stack):
    message = await client(stack).messages.create(
        model=TINY, max_tokens=2, messages=[{"role": "user", "content": [{"type": "text", "text": "a b c"}]}])
    assert message.stop_reason == "max_tokens" and message.content[0].text == "echo: a"


async def test_messages_stream_helper(stack):
    async with client(stack).messages.stream(
            model=TINY, max_tokens=64, metadata=LORA,
            messages=[{"role": "user", "content": "stream please"}]) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == final.content[0].text == "echo: stream please via funny"
    assert final.stop_reason == "end_turn" and final.usage.input_tokens == 1


async def test_messages_errors_use_the_anthropic_envelope(stack):
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client(stack).messages.create(
            model=TINY, max_tokens=8, extra_body={"top_k": 5}, messages=[{"role": "user", "content": "hi"}],
            tools=[{"name": "weather", "description": "the weather", "input_schema": {"type": "object"}}])
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "tools, top_k" in caught.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError):
        await client(stack).messages.create(model="claude-nope", max_tokens=8,
                                            messages=[{"role": "user", "content": "hi"}])


async def test_messages_with_another_orgs_lora_id_is_not_found(stack):
    foreign_id = stack.loras["funny"]["lora"]["id"]
    with pytest.raises(anthropic.NotFoundError, match="metadata.lora|not found"):
        await client(stack, "org-b").messages.create(
            model=TINY, max_tokens=8, metadata={"lora": foreign_id, "completion_window": "flex"},
            messages=[{"role": "user", "content": "hi"}])
