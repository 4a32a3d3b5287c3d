"""Bus faults over the e2e multi-process topology, published on the bus directly (its RabbitMQ vhost):

- validation status events delivered twice and out of order fold to the same LoRA document as
  the same events delivered once in order;
- a poison validation job (its adapter's blob read raises on every delivery) is dead-lettered
  after the queue's delivery limit, and its record ends `unverified` with a code saying why.

The validator is stopped while the LoRAs are made, and their jobs are taken off its queue
before it comes back, so that their records stay `pending` until the test's events (or the
poison job) arrive.
"""
from __future__ import annotations

import asyncio
import contextlib
import subprocess
from datetime import UTC, datetime, timedelta

import aio_pika
import pytest
import requests

from shared.bus.base import Delivery
from shared.bus.rabbitmq import RabbitBus
from shared.catalogue.catalogue import load_catalogue
from shared.contracts import topology as t
from shared.contracts.messages import (
    SEQ_GPU_DONE,
    SEQ_RUNNING,
    AdapterRef,
    ValidateAdapter,
    ValidationStatusChanged,
)

MODEL = "loraserve/kimi-k2-tiny"
WAIT_SECONDS = 120.0


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def upload(topology, key: str, path) -> str:
    with open(path, "rb") as handle:
        resp = requests.post(f"{topology.url('file-ingest')}/v1/files", headers=auth(key), timeout=30,
                             files={"file": (path.name, handle)}, data={"purpose": "lora"})
    assert resp.status_code == 200, resp.text
    return resp.json()["id"]


def create_lora(topology, key: str, name: str, files: tuple[str, str]) -> dict:
    resp = requests.post(f"{topology.url('registry')}/v1/loras", headers=auth(key), timeout=30, json={
        "name": name, "supported_models": [MODEL], "config_file_id": files[0], "weights_file_id": files[1]})
    assert resp.status_code == 200, resp.text
    return resp.json()


def get_lora(topology, key: str, name: str) -> dict:
    resp = requests.get(f"{topology.url('registry')}/v1/loras/{name}", headers=auth(key), timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def wait_for(condition, what: str, seconds: float = WAIT_SECONDS):
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while not (value := await asyncio.to_thread(condition)):
        if loop.time() > until:
            raise AssertionError(f"{what}: not within {seconds} s")
        await asyncio.sleep(0.2)
    return value


def status_log(lora: dict, at: datetime) -> list[ValidationStatusChanged]:
    """What a validator and a worker would publish for the LoRA's one record: running, then failed."""
    [record] = lora["validations"]
    fields = {"lora_id": lora["id"], "org_id": "org-a", "model": MODEL, "validation_id": record["id"]}
    return [
        ValidationStatusChanged(**fields, status="running", seq=SEQ_RUNNING, occurred_at=at),
        ValidationStatusChanged(**fields, status="failed", seq=SEQ_GPU_DONE, result_code="output_nonfinite",
                                result_message="The validation request produced NaN logits.",
                                occurred_at=at + timedelta(seconds=7)),
    ]


def folded_view(lora: dict) -> dict:
    """Everything the fold decides, without what differs between two LoRAs (ids, names, creation)."""
    keep = ("model", "status", "result_code", "result_message", "started_at", "finished_at")
    return {"status": lora["status"], "updated_at": lora["updated_at"],
            "validations": [{k: r[k] for k in keep} for r in lora["validations"]]}


def poison_job(lora: dict) -> ValidateAdapter:
    [record] = lora["validations"]
    slug = load_catalogue().get(MODEL).slug
    adapter = AdapterRef(lora_id=lora["id"], name=lora["name"], config_file_id=lora["config_file_id"],
                         weights_file_id=lora["weights_file_id"], config_object_key="orgs/org-a/../escape",
                         weights_object_key="orgs/org-a/../escape-too")  # the blob store refuses such keys
    return ValidateAdapter(validation_id=record["id"], org_id="org-a", model=MODEL, model_slug=slug,
                           response_id=record["response_id"], adapter=adapter)


def unsettled(rabbit_url: str, queue: str) -> int:
    """Messages in `queue` not acked yet, ready or being handled (a passive declare counts only the first)."""
    vhost = rabbit_url.rsplit("/", 1)[1]
    listed = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages",
                             "--no-table-headers"], capture_output=True, text=True, timeout=60, check=True)
    counts = dict(line.split("\t") for line in listed.stdout.splitlines() if "\t" in line)
    return int(counts[queue])


async def purge(rabbit_url: str, queue: str) -> None:
    connection = await aio_pika.connect(rabbit_url)
    try:
        channel = await connection.channel()
        await (await channel.declare_queue(queue, passive=True)).purge()
    finally:
        await connection.close()


@pytest.fixture
async def bus(rabbit_url):
    bus = RabbitBus(rabbit_url, t.topology(load_catalogue().slugs()), connection_name="e2e-faults")
    await bus.start()
    yield bus
    await bus.close()


@contextlib.asynccontextmanager
async def validator_stopped(topology, rabbit_url: str):
    """LoRAs made inside stay `pending`: the validator is down, and its queue is emptied on leaving."""
    topology.kill("validator")
    try:
        yield
        await purge(rabbit_url, t.VALIDATION_QUEUE)
    finally:
        topology.start("validator")
        topology.wait_ready("validator", seconds=120)


async def adapter_files(topology, key: str, adapter_dir) -> tuple[str, str]:
    return (await asyncio.to_thread(upload, topology, key, adapter_dir / "adapter_config.json"),
            await asyncio.to_thread(upload, topology, key, adapter_dir / "adapter_model.safetensors"))


async def test_duplicated_and_reordered_status_events_fold_to_the_same_document(
        topology, keys, trained_adapter, rabbit_url, bus):
    key = keys[1]["org-a"]
    files = await adapter_files(topology, key, trained_adapter)
    async with validator_stopped(topology, rabbit_url):
        ordered = create_lora(topology, key, "events-in-order", files)
        shuffled = create_lora(topology, key, "events-shuffled", files)
    at = datetime.now(UTC).replace(microsecond=0)
    running, failed = status_log(ordered, at)
    for event in (running, failed):
        await bus.publish(event, source="test/e2e")
    running, failed = status_log(shuffled, at)
    for event in (failed, running, failed, running, running):
        await bus.publish(event, source="test/e2e")

    def both_folded():
        views = [get_lora(topology, key, lora["name"]) for lora in (ordered, shuffled)]
        done = all(v["validations"][0]["started_at"] and v["status"] != "pending_validation" for v in views)
        return done and views
    await wait_for(both_folded, "both LoRAs folding their events")
    await wait_for(lambda: unsettled(rabbit_url, t.REGISTRY_STATUS_QUEUE) == 0, "the registry taking every event")

    in_order, out_of_order = (get_lora(topology, key, lora["name"]) for lora in (ordered, shuffled))
    assert folded_view(out_of_order) == folded_view(in_order)
    [record] = in_order["validations"]
    assert in_order["status"] == "failed" and record["status"] == "failed"
    assert record["result_code"] == "output_nonfinite"
    assert record["started_at"] == int(at.timestamp()) and record["finished_at"] == int(at.timestamp()) + 7


async def test_a_poison_validation_job_is_dead_lettered_and_its_record_ends_unverified(
        topology, keys, trained_adapter, rabbit_url, bus, figures):
    key = keys[1]["org-a"]
    deliveries: list[int] = []
    async with validator_stopped(topology, rabbit_url):
        poisoned = create_lora(topology, key, "poisoned-job", await adapter_files(topology, key, trained_adapter))

        async def count_running(delivery: Delivery) -> None:
            event = ValidationStatusChanged.from_event(delivery.event)
            if event.validation_id == poisoned["validations"][0]["id"] and event.status == "running":
                deliveries.append(1)

        subscription = await bus.subscribe(t.EVENTS, ["org.org-a.validation.status.changed"], count_running)
    await bus.publish(poison_job(poisoned), source="test/e2e")  # the only job the validator will see

    lora = await wait_for(lambda: (doc := get_lora(topology, key, "poisoned-job"))["status"] != "pending_validation"
                          and doc, "the poisoned LoRA's record ending")
    await wait_for(lambda: len(deliveries) >= t.VALIDATION_DELIVERY_LIMIT, "the poison's running events")
    await subscription.close()
    [record] = lora["validations"]
    assert record["status"] == "unverified", record
    assert record["result_code"] == "validation_dead_lettered"
    assert "delivery_limit" in record["result_message"]
    assert lora["status"] == "ready"  # unverified stays usable, as the seed says
    # each delivery published `running` once before its blob read failed: exactly the queue's limit
    assert len(deliveries) == t.VALIDATION_DELIVERY_LIMIT
    figures["poison validation job: deliveries before dead-letter"] = str(len(deliveries))
