"""The worker's adapter tiers end to end: prefetch before a job's place in the batch, operators' pins over
/internal, and the tiers' metrics (loads per tier, hits and misses, evictions by reason, load waits)."""
import asyncio
import contextlib

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from services.gpu_worker.adapters.adapter_cache import adapter_key
from services.gpu_worker.app import build
from shared.composition import build_platform
from shared.contracts.messages import ResponseFinished
from shared.http.app import create_app
from shared.settings import DEV_SERVICE_TOKEN, Settings
from tests.integration.gpu_worker.conftest import ENTRY
from tests.integration.gpu_worker.test_worker_runtime import SOURCE, job, replies_of

PINS = "/internal/v1/worker/pins"
TOKEN = {"x-service-token": DEV_SERVICE_TOKEN}


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, {"model": ENTRY.id, **labels}) or 0.0


def figures() -> dict[str, float]:
    return {
        **{f"load_{tier}": sample("loraserve_worker_adapter_load_seconds_count", tier=tier)
           for tier in ("disk", "cpu", "slot")},
        **{f"{tier}_{result}": sample("loraserve_worker_adapter_cache_total", tier=tier, result=result)
           for tier in ("disk", "cpu", "slot") for result in ("hit", "miss")},
        "slot_evicted_idle": sample("loraserve_worker_adapter_evictions_total", tier="slot", reason="idle"),
        "slot_waits": sample("loraserve_worker_adapter_load_wait_seconds_count", tier="slot"),
    }


async def until(predicate, timeout=20.0):
    async def poll():
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def test_a_queued_jobs_adapter_is_fetched_before_the_job_gets_its_place_in_the_batch(platform):
    bus, worker, refs, _ = platform
    ref = refs["phrase"].model_copy(update={"lora_id": "lora-prefetched"})
    key = adapter_key(ref)
    async with contextlib.AsyncExitStack() as batch_full:
        for _ in range(worker.share.max_running):
            await batch_full.enter_async_context(worker.share.place("org-busy"))
        stream = await bus.request(job("resp_prefetch", ref), source=SOURCE)
        await until(lambda: key in worker.adapters)  # loaded while the job still waits for a place
        assert worker.residency.queued(key) == 1 and worker.share.total == worker.share.max_running
    final = (await replies_of(stream))[-1]
    assert isinstance(final, ResponseFinished) and final.completion_tokens > 0
    assert worker.residency.queued(key) == 0


async def test_loads_hits_evictions_and_waits_are_counted_per_tier(platform):
    bus, _, refs, _ = platform
    before = figures()
    # three LoRAs with the same files: one download, three CPU reads, three slot loads over two slots
    for index, name in enumerate(["lora-m1", "lora-m2", "lora-m3", "lora-m3"]):
        ref = refs["phrase"].model_copy(update={"lora_id": name})
        final = (await replies_of(await bus.request(job(f"resp_metrics_{index}", ref), source=SOURCE)))[-1]
        assert isinstance(final, ResponseFinished)
    after = figures()
    moved = {name: after[name] - before[name] for name in after}
    assert moved["load_cpu"] == 3 and moved["load_slot"] == 3 and moved["load_disk"] <= 2
    assert moved["slot_miss"] == 3 and moved["slot_hit"] == 1 and moved["cpu_hit"] == 1
    assert moved["slot_evicted_idle"] >= 1 and moved["slot_waits"] == 3
    for family in REGISTRY.collect():
        if family.name.startswith("loraserve_worker_adapter"):
            assert all(set(s.labels) <= {"model", "tier", "result", "reason", "le"} for s in family.samples)


@pytest.fixture
async def worker_app(tmp_path):
    settings = Settings(data_dir=tmp_path, worker_model=ENTRY.id, worker_slots=2, worker_max_batch=2,
                        worker_pinned_loras="lora-x")
    platform = build_platform(settings, source="test/gpu-worker")
    async with TestClient(TestServer(create_app(platform, [build(platform)]))) as client:
        yield client


async def test_operators_pin_loras_by_id_never_as_many_as_the_slots(worker_app):
    client = worker_app
    listed = await client.get(PINS, headers=TOKEN)
    assert listed.status == 200 and (await listed.json())["data"] == ["lora-x"]
    refused = await client.post(PINS, json={"lora_id": "lora-y"}, headers=TOKEN)
    assert refused.status == 409 and refused.headers["x-should-retry"] == "false"
    assert (await refused.json())["error"]["code"] == "too_many_pins"
    for body in ({"lora_id": ""}, {"lora_id": "a:b"}, {"lora": "lora-y"}):
        bad = await client.post(PINS, json=body, headers=TOKEN)
        assert bad.status == 400 and (await bad.json())["error"]["type"] == "invalid_request_error"
    assert (await client.post(PINS, json={"lora_id": "lora-y"})).status == 404  # no service token
    removed = await client.delete(f"{PINS}/lora-x", headers=TOKEN)
    assert removed.status == 200 and (await removed.json())["data"] == []
    assert (await client.delete(f"{PINS}/lora-x", headers=TOKEN)).status == 404
    assert (await client.post(PINS, json={"lora_id": "lora-y"}, headers=TOKEN)).status == 201
    again = await client.post(PINS, json={"lora_id": "lora-y"}, headers=TOKEN)
    assert again.status == 200 and (await again.json())["data"] == ["lora-y"]


def test_a_pin_setting_that_would_fill_every_slot_stops_the_worker_with_a_message(tmp_path):
    settings = Settings(data_dir=tmp_path, worker_model=ENTRY.id, worker_slots=2, worker_pinned_loras="a, b")
    with pytest.raises(SystemExit, match="LORASERVE_WORKER_PINNED_LORAS"):
        build(build_platform(settings, source="test/gpu-worker"))
