"""Request/reply: a worker streams deltas back to the requester, in order."""

from __future__ import annotations

import pytest

from shared.bus.base import BusError
from shared.contracts import topology as t
from shared.contracts.messages import ResponseDelta, ResponseFinished
from tests.integration.bus.conftest import WAIT, Inbox
from tests.integration.bus.messages import SOURCE, inference_job

TOKENS = ["Spin", " spin", " hoo", "ray", "!"]


async def stream_tokens(delivery) -> None:
    response_id = delivery.event.data["response_id"]
    for index, text in enumerate(TOKENS):
        await delivery.reply(ResponseDelta(response_id=response_id, index=index, text=text), source="worker")
    finished = ResponseFinished(
        response_id=response_id,
        output_text="".join(TOKENS),
        finish_reason="stop",
        prompt_tokens=1,
        completion_tokens=len(TOKENS),
    )
    await delivery.reply(finished, source="worker")


async def test_reply_stream_delivers_deltas_in_order(harness):
    router, worker = await harness.bus(), await harness.bus()
    await worker.consume(t.inference_queue("tiny"), stream_tokens)

    stream = await router.request(inference_job("resp_stream"), source=SOURCE, correlation_id="req-1")
    replies = [await stream.next(timeout=WAIT) for _ in range(len(TOKENS) + 1)]
    await stream.close()

    deltas, finished = replies[:-1], replies[-1]
    assert [r.type for r in deltas] == ["response.delta"] * len(TOKENS)
    assert [r.data["index"] for r in deltas] == list(range(len(TOKENS)))
    assert "".join(r.data["text"] for r in deltas) == "Spin spin hooray!"
    assert finished.type == "response.finished"
    assert {r.correlationid for r in replies} == {"req-1"}


async def test_concurrent_requests_each_get_their_own_replies(harness):
    router, worker = await harness.bus(), await harness.bus()
    await worker.consume(t.inference_queue("tiny"), stream_tokens)

    first = await router.request(inference_job("resp_first"), source=SOURCE)
    second = await router.request(inference_job("resp_second"), source=SOURCE)
    for stream, response_id in ((second, "resp_second"), (first, "resp_first")):
        replies = [await stream.next(timeout=WAIT) for _ in range(len(TOKENS) + 1)]
        assert {r.data["response_id"] for r in replies} == {response_id}


async def test_reply_to_a_requester_that_is_gone_raises(harness):
    router, worker = await harness.bus(), await harness.bus()
    jobs = Inbox()
    await worker.consume(t.inference_queue("tiny"), jobs)
    stream = await router.request(inference_job("resp_gone"), source=SOURCE)
    job = await jobs.next()
    await stream.close()
    await router.close()  # its private reply queue goes with it

    with pytest.raises(BusError):
        await job.reply(ResponseDelta(response_id="resp_gone", index=0, text="x"), source="worker")
