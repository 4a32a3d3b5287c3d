"""Numbers out of range and prompts that cannot fit the model: a 400 in each API's envelope, and no job queued."""
from __future__ import annotations

import aiohttp
import anthropic
import openai
import pytest

from tests.integration.inference_router.harness import TINY, start_stack

HELLO = [{"role": "user", "content": "hello"}]
PAST_64_BITS = 2**64
TOO_LONG = "x" * 4_000_000  # the 4 MB prompt that held a worker's event loop for seconds


@pytest.fixture
async def stack(tmp_path):
    stack = await start_stack(tmp_path)
    yield stack
    await stack.close()


def oai(stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stack.url(), api_key=stack.keys["org-a"], max_retries=0)


def claude(stack) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=stack.url(""), api_key=stack.keys["org-a"], max_retries=0)


async def refused(call) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        await call
    assert caught.value.status_code == 400
    return caught.value


@pytest.mark.parametrize("field, value", [("seed", PAST_64_BITS), ("seed", -(2**63) - 1),
                                          ("max_tokens", PAST_64_BITS), ("max_completion_tokens", PAST_64_BITS)])
async def test_chat_integers_out_of_range_are_a_400_and_never_queued(stack, field, value):
    error = await refused(oai(stack).chat.completions.create(model=TINY, messages=HELLO, temperature=1,
                                                             extra_body={field: value}))
    assert error.body["param"] == field and error.body["type"] == "invalid_request_error"
    assert stack.worker.jobs == []


async def test_a_seed_in_the_64_bit_signed_range_is_accepted(stack):
    done = await oai(stack).chat.completions.create(model=TINY, messages=HELLO, temperature=1, seed=2**63 - 1)
    assert done.choices[0].message.content and stack.worker.jobs[0].sampling.seed == 2**63 - 1


async def test_responses_and_messages_token_limits_out_of_range_are_400s(stack):
    error = await refused(oai(stack).responses.create(model=TINY, input="hi", max_output_tokens=PAST_64_BITS))
    assert error.body["param"] == "max_output_tokens"
    # the Anthropic SDK refuses such a max_tokens itself: send the raw request a client could send
    raw = {"model": TINY, "max_tokens": PAST_64_BITS, "messages": HELLO}
    async with aiohttp.ClientSession() as session, session.post(
            stack.url("/v1/messages"), headers={"x-api-key": stack.keys["org-a"]}, json=raw) as answer:
        body = await answer.json()
    assert answer.status == 400
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert stack.worker.jobs == []


async def test_a_prompt_that_cannot_fit_the_context_is_refused_before_any_queue(stack):
    error = await refused(oai(stack).chat.completions.create(
        model=TINY, messages=[{"role": "user", "content": TOO_LONG}]))
    assert error.body["code"] == "context_length_exceeded" and error.body["param"] == "messages"
    assert "1024" in error.message
    error = await refused(oai(stack).responses.create(model=TINY, input=TOO_LONG, background=True))
    assert error.body["code"] == "context_length_exceeded" and error.body["param"] == "input"
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude(stack).messages.create(model=TINY, max_tokens=8,
                                            messages=[{"role": "user", "content": TOO_LONG}])
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "too long" in caught.value.body["error"]["message"]
    assert stack.worker.jobs == []


async def test_a_long_prompt_that_may_fit_is_passed_on(stack):
    # 10,000 characters may be as few as 770 tokens of the tiny model: its worker decides, not the router
    done = await oai(stack).chat.completions.create(model=TINY, messages=[{"role": "user", "content": "y" * 10_000}])
    assert done.choices[0].message.content and len(stack.worker.jobs) == 1
