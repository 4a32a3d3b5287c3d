"""WorkerCall: no first reply is a 503 and a cancel; silence mid-stream ends it with worker_lost."""
from __future__ import annotations

import asyncio

import pytest

from services.inference_router.dispatch import WorkerCall, run_to_end, worker_error
from shared.bus.inprocess import InProcessBus
from shared.contracts import topology
from shared.contracts.errors import BadRequest, InternalError, ServiceUnavailable
from shared.contracts.messages import (
    CancelResponse,
    ChatMessage,
    GenerateResponse,
    ResponseDelta,
    ResponseErrored,
    ResponseFinished,
)

SLUG = "kimi-k2-tiny"


@pytest.fixture
async def bus():
    bus = InProcessBus(topology.topology([SLUG]))
    await bus.start()
    cancels: list[CancelResponse] = []

    async def on_cancel(delivery):
        cancels.append(CancelResponse.from_event(delivery.event))

    await bus.subscribe(topology.cancels_exchange(SLUG), [""], on_cancel)
    bus.cancels = cancels
    yield bus
    await bus.close()


def job() -> GenerateResponse:
    return GenerateResponse(response_id="chatcmpl-1", org_id="org-a", model="loraserve/kimi-k2-tiny",
                            model_slug=SLUG, messages=[ChatMessage(role="user", content="hi")], stream=True)


def call(bus, timeout=0.05) -> WorkerCall:
    return WorkerCall(bus, job(), source="test", correlation_id="req_1", priority=7, first_timeout=timeout,
                      idle_timeout=timeout)


async def settle(bus):
    """Let the in-process bus deliver what was published (no timing involved)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def answer(bus, *replies):
    async def handle(delivery):
        for reply in replies:
            await delivery.reply(reply, source="worker")
    return await bus.consume(topology.inference_queue(SLUG), handle)


async def test_no_first_reply_is_a_503_and_cancels_the_queued_job(bus):
    with pytest.raises(ServiceUnavailable, match="No worker"):
        async with call(bus) as worker_call:
            await worker_call.first()
    await settle(bus)
    assert [c.response_id for c in bus.cancels] == ["chatcmpl-1"]
    assert await bus.queue_depth(topology.inference_queue(SLUG)) == 1  # it waited there, with its priority


async def test_silence_after_the_first_reply_ends_with_worker_lost(bus):
    await answer(bus, ResponseDelta(response_id="chatcmpl-1", index=0, text="Hi"))
    async with call(bus) as worker_call:
        replies = [r async for r in worker_call.replies()]
    assert isinstance(replies[0], ResponseDelta)
    assert isinstance(replies[-1], ResponseErrored) and replies[-1].code == "worker_lost"
    await settle(bus)
    assert len(bus.cancels) == 1


async def test_a_finished_call_is_not_cancelled(bus):
    finished = ResponseFinished(response_id="chatcmpl-1", output_text="Hi", finish_reason="stop",
                                prompt_tokens=1, completion_tokens=1)
    await answer(bus, ResponseDelta(response_id="chatcmpl-1", index=0, text="Hi"), finished)
    async with call(bus) as worker_call:
        assert await run_to_end(worker_call) == finished
    await settle(bus)
    assert bus.cancels == []


def test_worker_errors_map_to_http_errors():
    def err(code):
        return worker_error(ResponseErrored(response_id="r", code=code, message="m"))
    assert isinstance(err("context_length_exceeded"), BadRequest)
    assert isinstance(err("stream_interrupted"), ServiceUnavailable)
    assert isinstance(err("output_nonfinite"), InternalError)
