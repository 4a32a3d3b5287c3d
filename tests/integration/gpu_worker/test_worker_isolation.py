"""One org's bad request or a failing engine step never becomes another org's error or an adapter's verdict."""
import asyncio

from shared.contracts import topology as t
from shared.contracts.messages import (
    ChatMessage,
    ResponseDelta,
    ResponseErrored,
    ResponseFinished,
    SamplingParams,
    ValidationStatusChanged,
)
from tests.integration.gpu_worker.conftest import ENTRY, PHRASE
from tests.integration.gpu_worker.test_worker_runtime import SOURCE, job, replies_of, validation

SEED_PAST_64_BITS = 2**64


def verdicts(events):
    return events.by_type[ValidationStatusChanged.TYPE]


async def test_a_seed_past_64_bits_fails_only_its_own_request(platform):
    bus, _, refs, events = platform
    sampling = SamplingParams(max_tokens=24, temperature=1.0, seed=SEED_PAST_64_BITS)
    bad = job("resp_bad_seed", sampling=sampling).model_copy(update={"org_id": "org-b"})
    good = job("resp_good", refs["phrase"], stream=True)
    good_stream = await bus.request(good, source=SOURCE)
    assert (await good_stream.next(timeout=20)).type == ResponseDelta.TYPE  # running when the bad one lands
    await bus.publish(validation("resp_val_beside", refs["phrase"]), source=SOURCE)
    bad_replies = await replies_of(await bus.request(bad, source=SOURCE))
    good_replies = await replies_of(good_stream)
    assert isinstance(bad_replies[-1], ResponseErrored) and bad_replies[-1].code == "invalid_request"
    assert isinstance(good_replies[-1], ResponseFinished) and good_replies[-1].output_text == PHRASE
    verdict = (await events.wait_for(lambda m: isinstance(m, ValidationStatusChanged)))[0]
    assert (verdict.status, verdict.result_code) == ("succeeded", None)


def fail_decode(worker, times):
    """An engine step that raises (e.g. a device error) the next `times` decodes."""
    runner = worker.engine.host.engine.runner
    decode, left = runner.decode, [times]

    def failing(*args, **kwargs):
        if left[0] > 0:
            left[0] -= 1
            raise RuntimeError("device error injected by the test")
        return decode(*args, **kwargs)

    runner.decode = failing


async def test_an_engine_failure_during_validation_is_redelivered_not_a_failed_verdict(platform):
    bus, worker, refs, events = platform
    fail_decode(worker, times=1)
    await bus.publish(validation("resp_val_retry", refs["phrase"]), source=SOURCE)
    verdict = (await events.wait_for(lambda m: isinstance(m, ValidationStatusChanged)))[0]
    assert (verdict.status, verdict.result_code) == ("succeeded", None)
    assert [v.status for v in verdicts(events)] == ["succeeded"]


async def test_an_engine_that_keeps_failing_dead_letters_the_validation_without_a_verdict(platform):
    bus, worker, refs, events = platform
    fail_decode(worker, times=10**6)
    await bus.publish(validation("resp_val_dead", refs["phrase"]), source=SOURCE)
    dlq = t.topology([ENTRY.slug]).queue(t.gpu_validation_queue(ENTRY.slug)).dlq_name
    for _ in range(400):
        if await bus.queue_depth(dlq) == 1:
            break
        await asyncio.sleep(0.05)
    assert await bus.queue_depth(dlq) == 1  # the registry folds it: the validation ends unverified
    assert verdicts(events) == []


async def test_a_failing_step_answers_every_request_it_held_and_the_worker_serves_on(platform):
    bus, worker, _, _ = platform
    fail_decode(worker, times=1)
    first = await replies_of(await bus.request(job("resp_step_fails"), source=SOURCE))
    assert isinstance(first[-1], ResponseErrored) and first[-1].code == "internal_error"
    after = await replies_of(await bus.request(job("resp_after"), source=SOURCE))
    assert isinstance(after[-1], ResponseFinished)


async def test_a_small_request_is_answered_while_a_huge_prompt_is_being_tokenized(platform):
    bus, _, _, _ = platform
    huge = job("resp_huge").model_copy(update={"messages": [ChatMessage(role="user", content="x" * 4_000_000)]})
    answered = []

    async def answer(name, stream):
        replies = await replies_of(stream, timeout=60)
        answered.append(name)
        return replies[-1]

    huge_final = asyncio.create_task(answer("huge", await bus.request(huge, source=SOURCE)))
    await asyncio.sleep(0.2)  # let the worker take the huge one first
    small_final = await answer("small", await bus.request(job("resp_small"), source=SOURCE))
    huge_final = await huge_final
    assert isinstance(small_final, ResponseFinished) and small_final.completion_tokens > 0
    assert isinstance(huge_final, ResponseErrored) and huge_final.code == "context_length_exceeded"
    assert answered == ["small", "huge"]  # the worker kept serving while it tokenized seconds of prompt
