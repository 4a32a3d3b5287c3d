"""metadata.lora and its constraints, metadata limits and unsupported parameters, as a caller sees them."""
from __future__ import annotations

import aiohttp
import openai
import pytest

from shared.contracts.messages import LoraCreated, LoraDeleted, LoraUpdated
from tests.integration.inference_router.harness import BIG, TINY, lora_entry, start_stack, wait_for

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def stack(tmp_path):
    stack = await start_stack(tmp_path)
    yield stack
    await stack.close()


def client(stack, org: str = "org-a") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stack.url(), api_key=stack.keys[org], max_retries=0)


async def chat(stack, metadata=None, org="org-a", model=TINY, **kw):
    return await client(stack, org).chat.completions.create(
        model=model, messages=HELLO, extra_body={"metadata": metadata} if metadata else None, **kw)


async def test_asap_is_refused_with_a_lora(stack):
    with pytest.raises(openai.BadRequestError) as caught:
        await chat(stack, {"lora": "funny", "completion_window": "asap"})
    assert caught.value.status_code == 400
    assert "priority, standard or flex" in caught.value.message
    assert caught.value.body["param"] == "metadata.completion_window"


async def test_a_model_the_lora_does_not_support_is_refused(stack):
    with pytest.raises(openai.BadRequestError) as caught:
        await chat(stack, {"lora": "funny", "completion_window": "flex"}, model=BIG)
    assert "does not support model 'moonshotai/Kimi-K2.6'" in caught.value.message
    assert caught.value.body["param"] == "model"


async def test_a_failed_validation_blocks_the_model_and_says_why(stack):
    with pytest.raises(openai.BadRequestError) as caught:
        await chat(stack, {"lora": "broken", "completion_window": "standard"})
    assert "lora_B of layers.0.self_attn.q_a_proj has NaN values" in caught.value.message
    assert caught.value.body["code"] == "lora_validation_failed"


async def test_every_problem_is_reported_at_once(stack):
    with pytest.raises(openai.BadRequestError) as caught:
        await chat(stack, {"lora": "big-only", "completion_window": "asap"})
    assert "asap" in caught.value.message and "does not support model" in caught.value.message


@pytest.mark.parametrize("name", ["pending", "unverified"])
async def test_pending_and_unverified_loras_are_usable(stack, name):
    completion = await chat(stack, {"lora": name, "completion_window": "flex"})
    assert completion.choices[0].message.content == f"echo: hello via {name}"


async def test_a_lora_by_uuid(stack):
    lora_id = stack.loras["funny"]["lora"]["id"]
    completion = await chat(stack, {"lora": lora_id.upper(), "completion_window": "standard"})
    assert completion.choices[0].message.content.endswith("via funny")


async def test_another_orgs_lora_is_not_found_by_name_or_id(stack):
    # org-b has its own "funny": the name resolves to org-b's LoRA, never org-a's
    completion = await chat(stack, {"lora": "funny", "completion_window": "flex"}, org="org-b")
    assert stack.worker.jobs[-1].adapter.lora_id == stack.loras["org-b-lora"]["lora"]["id"]
    assert completion.choices[0].message.content.endswith("via funny")
    for ref in ("broken", stack.loras["broken"]["lora"]["id"]):
        with pytest.raises(openai.NotFoundError) as caught:
            await chat(stack, {"lora": ref, "completion_window": "flex"}, org="org-b")
        assert caught.value.body["param"] == "metadata.lora" and caught.value.body["code"] == "lora_not_found"


async def test_lora_events_keep_the_read_model_current(stack):
    bus, source = stack.platform.bus, "test/registry"
    entry = lora_entry("org-a", "fresh", models=[TINY], version=1)
    await bus.publish(LoraCreated(**entry), source=source)
    await wait_for(lambda: stack.router.loras.model.find("org-a", "fresh") is not None)
    assert (await chat(stack, {"lora": "fresh", "completion_window": "flex"})).choices[0].message.content
    failed = lora_entry("org-a", "fresh", models=[TINY], statuses={TINY: "failed"}, result_message="bad shapes",
                        version=3, lora_id=entry["lora"]["id"])
    await bus.publish(LoraUpdated(**failed), source=source)
    stale = lora_entry("org-a", "fresh", models=[TINY], version=2, lora_id=entry["lora"]["id"])
    await bus.publish(LoraUpdated(**stale), source=source)
    await wait_for(lambda: stack.router.loras.model.find("org-a", "fresh").version == 3)
    with pytest.raises(openai.BadRequestError, match="bad shapes"):
        await chat(stack, {"lora": "fresh", "completion_window": "flex"})
    await bus.publish(LoraDeleted(**{**failed, "version": 4}), source=source)
    await wait_for(lambda: stack.router.loras.model.find("org-a", "fresh") is None)
    with pytest.raises(openai.NotFoundError):
        await chat(stack, {"lora": "fresh", "completion_window": "flex"})


async def test_metadata_limits(stack):
    too_many = {f"k{i}": "v" for i in range(17)}
    for metadata, needle in ((too_many, "at most 16"), ({"k" * 65: "v"}, "longer than 64"),
                             ({"note": "v" * 513}, "longer than 512"),
                             ({"completion_window": "soon"}, "not one of")):
        with pytest.raises(openai.BadRequestError, match=needle):
            await chat(stack, metadata)


async def test_unknown_model_is_404(stack):
    with pytest.raises(openai.NotFoundError) as caught:
        await chat(stack, model="nobody/nothing")
    assert caught.value.body["code"] == "model_not_found"


async def test_unsupported_parameters_are_named(stack):
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        await chat(stack, tools=[tool], n=2, logprobs=True)
    assert "logprobs, tools, n" in caught.value.message and caught.value.body["code"] == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError, match="previous_response_id"):
        await client(stack).responses.create(model=TINY, input="hi", previous_response_id="resp_x")
    completion = await chat(stack, n=1, logprobs=False, tools=[])  # neutral values are fine
    assert completion.choices[0].message.content == "echo: hello"


async def test_both_auth_styles_and_no_key(stack):
    body = {"model": TINY, "messages": HELLO}
    async with aiohttp.ClientSession() as session:
        for headers in ({"Authorization": f"Bearer {stack.keys['org-a']}"}, {"x-api-key": stack.keys["org-a"]}):
            async with session.post(stack.url("/v1/chat/completions"), json=body, headers=headers) as response:
                assert response.status == 200 and response.headers["x-request-id"]
                assert (await response.json())["choices"][0]["message"]["content"] == "echo: hello"
        async with session.post(stack.url("/v1/chat/completions"), json=body) as response:
            assert response.status == 401 and "error" in await response.json()
