"""The worker on the in-process bus and a local blob store: jobs in, replies and events out."""
import asyncio

from services.gpu_worker.jobs.inference_jobs import handle_generate
from shared.bus.base import Delivery
from shared.contracts import topology as t
from shared.contracts.messages import (
    CancelResponse,
    ChatMessage,
    GenerateResponse,
    ResponseDelta,
    ResponseErrored,
    ResponseFinished,
    ResponseStatusChanged,
    RunGpuValidation,
    SamplingParams,
    ValidationStatusChanged,
)
from tests.integration.gpu_worker.conftest import ENTRY, PHRASE, PROMPT

SOURCE = "test/router"
REPLIES = {m.TYPE: m for m in (ResponseDelta, ResponseFinished, ResponseErrored)}


def job(response_id, adapter=None, **fields):
    return GenerateResponse(response_id=response_id, org_id="org-a", model=ENTRY.id, model_slug=ENTRY.slug,
                            messages=[ChatMessage(role="user", content=PROMPT)], adapter=adapter,
                            sampling=fields.pop("sampling", SamplingParams(max_tokens=24, temperature=0.0)), **fields)


async def replies_of(stream, timeout=20.0):
    replies = []
    while not replies or isinstance(replies[-1], ResponseDelta):
        event = await stream.next(timeout=timeout)
        replies.append(REPLIES[event.type].from_event(event))
    await stream.close()
    return replies


async def test_a_streamed_request_with_a_lora_streams_its_trained_answer(platform):
    bus, _, refs, _ = platform
    stream = await bus.request(job("resp_stream", refs["phrase"], stream=True), source=SOURCE)
    replies = await replies_of(stream)
    deltas, final = replies[:-1], replies[-1]
    assert isinstance(final, ResponseFinished) and final.finish_reason == "stop"
    assert "".join(d.text for d in deltas) == final.output_text == PHRASE
    assert [d.index for d in deltas] == list(range(len(deltas))) and len(deltas) > 1
    assert final.prompt_tokens > 0 and final.completion_tokens == len(PHRASE) + 1


async def test_a_sync_request_without_lora_gets_one_final_reply_from_the_base_model(platform):
    bus, _, _, _ = platform
    replies = await replies_of(await bus.request(job("resp_sync"), source=SOURCE))
    assert len(replies) == 1 and isinstance(replies[0], ResponseFinished)
    assert PHRASE not in replies[0].output_text


async def test_a_background_request_publishes_its_response_events(platform):
    bus, _, refs, events = platform
    await bus.publish(job("resp_bg", refs["phrase"], background=True), source=SOURCE)
    done = await events.wait_for(lambda m: isinstance(m, ResponseStatusChanged) and m.seq == 2)
    statuses = [(m.status, m.seq) for m in events.by_type[ResponseStatusChanged.TYPE]]
    assert statuses == [("in_progress", 1), ("completed", 2)]
    assert done[0].output_text == PHRASE and done[0].org_id == "org-a" and done[0].lora_id == "lora-phrase"


async def test_a_job_whose_conversation_cannot_be_rendered_fails_at_once_instead_of_retrying(platform):
    bus, _, _, events = platform
    empty = job("resp_empty", background=True).model_copy(update={"messages": []})
    await bus.publish(empty, source=SOURCE)
    done = await events.wait_for(lambda m: isinstance(m, ResponseStatusChanged) and m.seq == 2)
    assert done[0].status == "failed" and done[0].error["code"] == "invalid_request"
    assert await bus.queue_depth(t.inference_queue(ENTRY.slug)) == 0


def validation(response_id, adapter):
    return RunGpuValidation(validation_id=f"val-{response_id}", org_id="org-a", model=ENTRY.id, model_slug=ENTRY.slug,
                            response_id=response_id, adapter=adapter)


async def test_gpu_validation_of_a_good_adapter_succeeds_under_its_response_id(platform):
    bus, _, refs, events = platform
    await bus.publish(validation("resp_val_ok", refs["phrase"]), source=SOURCE)
    verdict = (await events.wait_for(lambda m: isinstance(m, ValidationStatusChanged)))[0]
    assert (verdict.status, verdict.seq, verdict.result_code) == ("succeeded", 3, None)
    assert verdict.lora_id == "lora-phrase" and verdict.validation_id == "val-resp_val_ok"
    responses = [m for m in events.by_type[ResponseStatusChanged.TYPE] if m.response_id == "resp_val_ok"]
    assert next((m.status, m.seq) for m in responses) == ("in_progress", 1)
    # the short request may stop or reach its token limit (then the Response is "incomplete")
    assert responses[-1].status in ("completed", "incomplete") and responses[-1].seq == 2
    assert responses[-1].completion_tokens > 0 and responses[-1].input


async def test_gpu_validation_refuses_a_nan_adapter_with_its_code(platform):
    bus, _, refs, events = platform
    await bus.publish(validation("resp_val_nan", refs["nan"]), source=SOURCE)
    verdict = (await events.wait_for(lambda m: isinstance(m, ValidationStatusChanged)))[0]
    assert (verdict.status, verdict.seq, verdict.result_code) == ("failed", 3, "weights_nonfinite")
    failed = await events.wait_for(lambda m: isinstance(m, ResponseStatusChanged) and m.status == "failed")
    assert failed[0].error["code"] == "weights_nonfinite"


async def test_a_cancel_stops_a_running_stream(platform):
    bus, _, _, _ = platform
    long_job = job("resp_cancel", stream=True, sampling=SamplingParams(max_tokens=330, temperature=1.0, seed=3))
    stream = await bus.request(long_job, source=SOURCE)
    first = await stream.next(timeout=20)
    assert first.type == ResponseDelta.TYPE
    await bus.publish(CancelResponse(response_id="resp_cancel", org_id="org-a", model_slug=ENTRY.slug),
                      source=SOURCE, exchange=t.cancels_exchange(ENTRY.slug))
    final = (await replies_of(stream))[-1]
    assert isinstance(final, ResponseFinished) and final.finish_reason == "cancelled"
    assert final.completion_tokens < 330


class RecordingBus:
    def __init__(self):
        self.replies = []

    async def send_reply(self, reply_to, correlation_id, event):
        self.replies.append(event)


async def test_a_redelivered_streamed_job_is_never_replayed_into_its_stream(platform):
    _, worker, _, _ = platform
    recorder = RecordingBus()
    event = job("resp_again", stream=True).to_event(SOURCE)
    delivery = Delivery(event=event, queue=t.inference_queue(ENTRY.slug), routing_key="", delivery_count=2,
                        correlation_id="c1", reply_to="reply-here", _bus=recorder)
    await asyncio.wait_for(handle_generate(worker, delivery), 10)
    assert [e.type for e in recorder.replies] == [ResponseErrored.TYPE]
    assert recorder.replies[0].data["code"] == "stream_interrupted"


async def test_a_redelivered_non_streamed_job_runs_again_and_answers(platform):
    _, worker, refs, _ = platform
    recorder = RecordingBus()
    event = job("resp_again_sync", refs["phrase"]).to_event(SOURCE)
    delivery = Delivery(event=event, queue=t.inference_queue(ENTRY.slug), routing_key="", delivery_count=2,
                        correlation_id="c2", reply_to="reply-here", _bus=recorder)
    await asyncio.wait_for(handle_generate(worker, delivery), 20)
    assert [e.type for e in recorder.replies] == [ResponseFinished.TYPE]
    assert recorder.replies[0].data["output_text"] == PHRASE


async def test_a_worker_stopping_mid_stream_ends_the_stream_with_an_error(platform):
    bus, worker, _, _ = platform
    long_job = job("resp_stop", stream=True, sampling=SamplingParams(max_tokens=330, temperature=1.0, seed=3))
    stream = await bus.request(long_job, source=SOURCE)
    assert (await stream.next(timeout=20)).type == ResponseDelta.TYPE
    await worker.engine.loop.stop(drain_seconds=0)
    final = (await replies_of(stream))[-1]
    assert isinstance(final, ResponseErrored) and final.code == "stream_interrupted"
