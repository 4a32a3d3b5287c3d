"""The router over real RabbitMQ: direct reply-to streams, priorities, the response-events queue, cancels."""
from __future__ import annotations

import openai
import pytest

from tests.integration.inference_router.harness import TINY, start_stack, wait_for

pytestmark = pytest.mark.rabbitmq
LORA = {"lora": "funny", "completion_window": "standard"}


async def test_stream_background_and_cancel_over_rabbitmq(tmp_path, rabbit_url):
    stack = await start_stack(tmp_path, amqp_url=rabbit_url)
    try:
        api = openai.AsyncOpenAI(base_url=stack.url(), api_key=stack.keys["org-a"], max_retries=0)
        stream = await api.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "a b"}],
                                                   stream=True, extra_body={"metadata": LORA})
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "echo: a b via funny" and stack.worker.priorities[-1] == 5
        created = await api.responses.create(model=TINY, input="later", background=True, metadata=LORA)
        await wait_for(lambda: (created.id, "completed") in stack.folded)
        assert (await api.responses.retrieve(created.id)).output_text == "echo: later via funny"
        stack.worker.hold_background = True
        held = await api.responses.create(model=TINY, input="slow", background=True, metadata=LORA)
        await wait_for(lambda: (held.id, "in_progress") in stack.folded)
        assert (await api.responses.cancel(held.id)).status == "cancelled"
        await wait_for(lambda: any(c.response_id == held.id for c in stack.worker.cancels))
    finally:
        await stack.close()
