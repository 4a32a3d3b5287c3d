"""Validation outcomes reach the LoRA: status events folded in any order, dead-lettered jobs and stuck
records end `unverified`, and an org's lora.validation.# consumer hears only that org."""
import time
from datetime import UTC, datetime

from services.registry.operations import apply_status
from services.registry.sweeper import sweep_once
from shared.bus.base import DeadLetter
from shared.contracts import topology as t
from shared.contracts.messages import (
    SEQ_GPU_DONE,
    SEQ_RUNNING,
    SEQ_VALIDATOR_FAILED,
    ValidationStatusChanged,
)
from tests.integration.registry.conftest import KIMI, TINY


def status(lora: dict, record: dict, state: str, seq: int, at: float, org: str = "org-a", code=None):
    return ValidationStatusChanged(lora_id=lora["id"], org_id=org, model=record["model"],
                                   validation_id=record["id"], status=state, seq=seq, result_code=code,
                                   result_message=f"{code}: details" if code else None,
                                   occurred_at=datetime.fromtimestamp(at, UTC))


async def publish(stack, *events):
    for event in events:
        await stack.platform.bus.publish(event, source="test/validator")


async def get(stack, ref: str, org: str = "org-a") -> dict:
    resp = await stack.http.get(f"/v1/loras/{ref}", headers=stack.auth(org))
    assert resp.status == 200
    return await resp.json()


async def test_out_of_order_and_duplicate_events_fold_to_the_final_states(stack):
    updates = await stack.tap_events("org.org-a.lora.#")
    lora = await (await stack.create(models=(TINY, KIMI))).json()
    tiny, kimi = lora["validations"]
    now = time.time()
    # the outcome before its "running", each twice; the validator's failure for the other model
    await publish(stack,
                  status(lora, tiny, "succeeded", SEQ_GPU_DONE, now + 2),
                  status(lora, kimi, "failed", SEQ_VALIDATOR_FAILED, now + 1, code="rank_too_large"),
                  status(lora, tiny, "running", SEQ_RUNNING, now + 1),
                  status(lora, tiny, "succeeded", SEQ_GPU_DONE, now + 2),
                  status(lora, tiny, "running", SEQ_RUNNING, now + 1))
    # three distinct changes: version 1 -> 4
    await updates.until(lambda e: e.type == "lora.updated" and e.data["version"] == 4)
    folded = await get(stack, "funnier-v1")
    tiny_now, kimi_now = folded["validations"]
    assert tiny_now["status"] == "succeeded" and tiny_now["started_at"] == int(now + 1)
    assert tiny_now["finished_at"] == int(now + 2)
    assert (kimi_now["status"], kimi_now["result_code"]) == ("failed", "rank_too_large")
    assert kimi_now["result_message"] == "rank_too_large: details"
    assert folded["status"] == "ready"
    for again in (status(lora, tiny, "running", SEQ_RUNNING, now + 1),
                  status(lora, tiny, "succeeded", SEQ_GPU_DONE, now + 2)):
        assert await apply_status(stack.registry, again) is False


async def test_a_terminal_record_stays_put_and_outcomes_are_announced_once(stack):
    finished = await stack.tap_events("org.org-a.lora.validation.#")
    lora = await (await stack.create()).json()
    [record] = lora["validations"]
    now = time.time()
    await publish(stack, status(lora, record, "failed", SEQ_VALIDATOR_FAILED, now, code="bad_config"))
    event = await finished.next()
    assert event.event.type == "lora.validation.finished"
    assert event.event.data["validation"]["status"] == "failed" and event.event.data["lora"]["status"] == "failed"
    for late in (status(lora, record, "succeeded", SEQ_GPU_DONE, now + 1),
                 status(lora, record, "failed", SEQ_VALIDATOR_FAILED, now, code="bad_config")):
        assert await apply_status(stack.registry, late) is False
    folded = await get(stack, lora["id"])
    assert folded["validations"][0]["status"] == "failed" and folded["status"] == "failed"
    assert folded["validations"][0]["result_code"] == "bad_config"


async def test_a_consumer_bound_to_one_orgs_outcomes_hears_no_other_org(stack):
    only_b = await stack.tap_events("org.org-b.lora.validation.#")
    lora_a = await (await stack.create(org="org-a")).json()
    lora_b = await (await stack.create(org="org-b")).json()
    now = time.time()
    await publish(stack, status(lora_a, lora_a["validations"][0], "failed", SEQ_VALIDATOR_FAILED, now, code="x"))
    await publish(stack, status(lora_b, lora_b["validations"][0], "succeeded", SEQ_GPU_DONE, now,
                                org="org-b"))
    event = (await only_b.next()).event
    assert event.data["org_id"] == "org-b" and event.data["lora"]["id"] == lora_b["id"]
    assert only_b.pending() == []


async def test_a_status_event_naming_another_org_changes_nothing(stack):
    lora = await (await stack.create(org="org-a")).json()
    record = lora["validations"][0]
    forged = status(lora, record, "failed", SEQ_VALIDATOR_FAILED, time.time(), org="org-b", code="x")
    assert await apply_status(stack.registry, forged) is False
    assert (await get(stack, "funnier-v1"))["validations"][0]["status"] == "pending"


async def test_a_dead_lettered_job_ends_unverified_and_the_lora_usable(stack):
    finished = await stack.tap_events("org.org-a.lora.validation.#")

    async def broken_validator(delivery):
        raise DeadLetter("the validator cannot process this job")

    stack.subscriptions.append(await stack.platform.bus.consume(t.VALIDATION_QUEUE, broken_validator))
    await stack.create()
    event = (await finished.next()).event
    record = event.data["validation"]
    assert record["status"] == "unverified" and record["result_code"] == "validation_dead_lettered"
    assert "rejected" in record["result_message"]
    assert event.data["lora"]["status"] == "ready"
    assert (await get(stack, "funnier-v1"))["validations"][0]["status"] == "unverified"


async def test_records_stuck_past_the_deadline_are_swept_to_unverified(stack):
    finished = await stack.tap_events("org.org-a.lora.validation.#")
    lora = await (await stack.create(models=(TINY, KIMI))).json()
    await publish(stack, status(lora, lora["validations"][0], "succeeded", SEQ_GPU_DONE, time.time()))
    await finished.next()
    assert await sweep_once(stack.registry) == 0  # nothing is past the deadline yet
    assert await sweep_once(stack.registry, now=time.time() + stack.registry.validation_deadline_seconds + 1) == 1
    swept = await get(stack, "funnier-v1")
    tiny_now, kimi_now = swept["validations"]
    assert tiny_now["status"] == "succeeded"
    assert (kimi_now["status"], kimi_now["result_code"]) == ("unverified", "validation_timeout")
    assert swept["status"] == "ready"
    assert await sweep_once(stack.registry, now=time.time() + 10_000) == 0
