"""A job the bus sets aside (dead-letters) ends the Response it was running `failed`.

A background inference job, or a GPU validation job whose worker had started the validation's
Response, would otherwise never run again and its Response would stay `queued`/`in_progress`
for ever. Workers are stood in for by consumers of the model's queues that fail.
"""
from __future__ import annotations

import asyncio

import openai
import pytest

from shared.bus.base import DeadLetter
from shared.contracts import topology
from shared.contracts.messages import ResponseStatusChanged, RunGpuValidation, ValidateAdapter
from shared.contracts.topology import INFERENCE_DELIVERY_LIMIT
from tests.integration.inference_router.harness import TINY, TINY_SLUG, start_stack
from tests.integration.registry.conftest import start_stack as start_registry
from tests.integration.registry.conftest import stop_stack as stop_registry


@pytest.fixture
async def stack(tmp_path):
    stack = await start_stack(tmp_path, worker=False)
    yield stack
    await stack.close()


async def failed_response(stack, handler) -> openai.types.responses.Response:
    client = openai.AsyncOpenAI(base_url=stack.url(), api_key=stack.keys["org-a"], max_retries=0)
    subscription = await stack.platform.bus.consume(topology.inference_queue(TINY_SLUG), handler)
    try:
        created = await client.responses.create(model=TINY, input="hello", background=True)
        response = created
        for _ in range(500):  # the fold is asynchronous; ten seconds at most
            response = await client.responses.retrieve(created.id)
            if response.status not in ("queued", "in_progress"):
                break
            await asyncio.sleep(0.02)
        return response
    finally:
        await subscription.close()


async def test_a_background_job_that_fails_every_delivery_ends_failed(stack):
    deliveries = []

    async def crashing_worker(delivery) -> None:
        deliveries.append(delivery.delivery_count)
        raise RuntimeError("the worker died running it")

    response = await failed_response(stack, crashing_worker)
    assert response.status == "failed"
    assert response.error.code == "job_dead_lettered" and "delivered" in response.error.message
    assert deliveries == list(range(1, INFERENCE_DELIVERY_LIMIT + 1))


async def test_a_background_job_a_worker_refuses_ends_failed(stack):
    async def refusing_worker(delivery) -> None:
        raise DeadLetter("job for model other-model reached the kimi-k2-tiny pool")

    response = await failed_response(stack, refusing_worker)
    assert response.status == "failed" and response.error.code == "job_dead_lettered"
    assert "other-model" in response.error.message


async def test_a_dead_lettered_gpu_validation_fails_the_response_its_worker_started(tmp_path):
    registry_stack = await start_registry(tmp_path)
    bus = registry_stack.platform.bus
    try:
        responses = await registry_stack.tap_events("org.org-a.response.#")

        async def passing_validator(delivery) -> None:
            job = ValidateAdapter.from_event(delivery.event)
            await bus.publish(RunGpuValidation(**job.model_dump()), source="test/validator")

        async def crashing_worker(delivery) -> None:
            raise RuntimeError("the worker died running it")

        registry_stack.subscriptions += [await bus.consume(topology.VALIDATION_QUEUE, passing_validator),
                                         await bus.consume(topology.gpu_validation_queue(TINY_SLUG), crashing_worker)]
        created = await (await registry_stack.create()).json()
        [record] = created["validations"]
        event = await responses.until(lambda e: e.type == ResponseStatusChanged.TYPE)
        failed = ResponseStatusChanged.from_event(event)
        assert failed.response_id == record["response_id"] and failed.status == "failed"
        assert failed.error["code"] == "validation_dead_lettered"
        resp = await registry_stack.http.get(f"/v1/loras/{created['id']}", headers=registry_stack.auth())
        assert (await resp.json())["validations"][0]["status"] == "unverified"
    finally:
        await stop_registry(registry_stack)
