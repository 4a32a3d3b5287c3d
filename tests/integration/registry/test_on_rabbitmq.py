"""The registry's bus paths on a real RabbitMQ (a private vhost): the broker's dead-lettering, out-of-order
status events, org-scoped bindings and the SSE fan-out."""
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from shared.bus.base import DeadLetter
from shared.contracts import topology as t
from shared.contracts.messages import SEQ_GPU_DONE, SEQ_RUNNING, SEQ_VALIDATOR_FAILED
from tests.fixtures.rabbit import private_vhost
from tests.integration.registry.conftest import KIMI, TINY, Stack, start_stack, stop_stack
from tests.integration.registry.test_events_stream import open_stream
from tests.integration.registry.test_validation_outcomes import publish, status

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(scope="module")
def vhost_url() -> str:
    # its own vhost: the fold reads the status queue, which no other suite may have filled
    with private_vhost("loraserve-registry") as url:
        yield url


@pytest.fixture
async def rabbit(tmp_path, vhost_url) -> AsyncIterator[Stack]:
    started = await start_stack(tmp_path, amqp_url=vhost_url)
    yield started
    await stop_stack(started)


async def test_a_job_the_broker_dead_letters_ends_unverified(rabbit):
    finished = await rabbit.tap_events("org.org-a.lora.validation.#")

    async def broken_validator(delivery):
        raise DeadLetter("cannot process")

    rabbit.subscriptions.append(await rabbit.platform.bus.consume(t.VALIDATION_QUEUE, broken_validator))
    lora = await (await rabbit.create(name=f"dead-{uuid.uuid4().hex[:6]}")).json()
    event = await finished.until(lambda e: e.data["lora"]["id"] == lora["id"])
    record = event.data["validation"]
    assert (record["status"], record["result_code"]) == ("unverified", "validation_dead_lettered")
    assert "rejected" in record["result_message"] and t.VALIDATION_QUEUE in record["result_message"]


async def test_out_of_order_status_events_fold_and_only_that_org_hears_them(rabbit):
    only_a = await rabbit.tap_events("org.org-a.lora.validation.#")
    stream_b = await open_stream(rabbit, "org-b")
    lora = await (await rabbit.create(models=(TINY, KIMI))).json()
    tiny, kimi = lora["validations"]
    now = time.time()
    await publish(rabbit, status(lora, tiny, "succeeded", SEQ_GPU_DONE, now + 2),
                  status(lora, tiny, "running", SEQ_RUNNING, now + 1),
                  status(lora, kimi, "failed", SEQ_VALIDATOR_FAILED, now + 1, code="rank_too_large"),
                  status(lora, tiny, "succeeded", SEQ_GPU_DONE, now + 2))
    outcomes = {(await only_a.until(lambda e: e.type == "lora.validation.finished")).data["validation"]["model"]
                for _ in range(2)}
    assert outcomes == {TINY, KIMI}
    lora_b = await (await rabbit.create(org="org-b", name="other-v1")).json()
    seen_b = [await stream_b.event() for _ in range(3)]
    assert [e for e, _ in seen_b] == ["file.created", "file.created", "lora.created"]
    assert {event["data"]["org_id"] for _, event in seen_b} == {"org-b"}
    assert seen_b[2][1]["data"]["lora"]["id"] == lora_b["id"]
    stream_b.resp.close()
