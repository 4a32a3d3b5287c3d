"""SIGKILL the validator or the worker in the middle of a validation job: after a restart the job is
redelivered and the validation still ends `succeeded`.

"In the middle" is made exact with the service's S3 fault proxy: the request for the LoRA's
file is held, so the service has taken the job (the validator has published `running`, the
worker has started the validation's Response) and waits on its blob store when it is killed.
"""
from __future__ import annotations

import time

from shared.contracts.topology import GPU_VALIDATION_DELIVERY_LIMIT
from tests.e2e.faults.harness import output_text, wait_until


def assert_succeeded(lora: dict) -> dict:
    assert lora["status"] == "ready", lora
    [record] = lora["validations"]
    assert record["status"] == "succeeded" and record["result_code"] is None, record
    return record


def test_a_validation_ends_succeeded_after_the_validator_is_killed_mid_job(fault_topology, api, faults,
                                                                           trained_adapter, figures):
    files = api.upload_adapter(trained_adapter)
    held = faults["validator"].hold(files[0])  # the validator's first read: the adapter's config
    registered = api.register("validator-killed", files)
    held.wait_arrived(120)
    running = wait_until(lambda: api.lora(registered.name)["validations"][0]["status"] == "running",
                         "the validator's running status")
    assert running

    killed_at = time.monotonic()
    fault_topology.sigkill("validator")
    faults["validator"].clear()
    restart = fault_topology.restart("validator")

    record = assert_succeeded(api.wait_lora_done(registered.name))
    figures["validator SIGKILL mid-job: restart to ready (s)"] = f"{restart:.1f}"
    figures["validator SIGKILL mid-job: kill to `succeeded` (s)"] = f"{time.monotonic() - killed_at:.1f}"
    assert api.response(record["response_id"])["status"] in ("completed", "incomplete")


def test_a_validation_ends_succeeded_after_the_worker_is_killed_mid_job(fault_topology, api, faults,
                                                                        trained_adapter, figures):
    files = api.upload_adapter(trained_adapter)
    held = faults["gpu-worker"].hold(files[1])  # the worker fetching the adapter's weights
    registered = api.register("worker-killed", files)
    held.wait_arrived(120)
    # the worker has started the validation request: its Response is in progress
    api.wait_response(registered.response_id, lambda doc: doc["status"] == "in_progress")

    killed_at = time.monotonic()
    fault_topology.sigkill("gpu-worker")
    faults["gpu-worker"].clear()
    restart = fault_topology.restart("gpu-worker")

    record = assert_succeeded(api.wait_lora_done(registered.name))
    figures["worker SIGKILL mid-validation: restart to ready (s)"] = f"{restart:.1f}"
    figures["worker SIGKILL mid-validation: kill to `succeeded` (s)"] = f"{time.monotonic() - killed_at:.1f}"
    response = api.wait_response(record["response_id"], lambda doc: doc["status"] != "in_progress")
    assert response["status"] in ("completed", "incomplete") and output_text(response), response


def test_a_gpu_validation_that_kills_every_worker_ends_unverified(fault_topology, api, faults, trained_adapter,
                                                                  figures):
    files = api.upload_adapter(trained_adapter)
    held = faults["gpu-worker"].hold(files[1])
    registered = api.register("validation-crash-loop", files)
    for delivery in range(1, GPU_VALIDATION_DELIVERY_LIMIT + 1):
        # the worker took the job and started its Response; it dies fetching the adapter, every time
        wait_until(lambda n=delivery: held.hits >= n, f"delivery {delivery} of the GPU validation job")
        last_kill = time.monotonic()
        fault_topology.sigkill("gpu-worker")
        fault_topology.restart("gpu-worker")
    faults["gpu-worker"].clear()

    lora = api.wait_lora_done(registered.name)
    [record] = lora["validations"]
    assert record["status"] == "unverified" and record["result_code"] == "validation_dead_lettered", record
    assert "delivery_limit" in record["result_message"]
    assert lora["status"] == "ready"  # unverified stays usable
    assert held.hits == GPU_VALIDATION_DELIVERY_LIMIT, "the job reached a worker again after its delivery limit"
    figures["GPU validation crashing its worker: deliveries before dead-letter"] = str(held.hits)
    figures["GPU validation crashing its worker: last kill to `unverified` (s)"] = \
        f"{time.monotonic() - last_kill:.1f}"
    # the validation's Response, which the worker had started, does not stay in progress for ever
    response = api.wait_response(record["response_id"], lambda doc: doc["status"] != "in_progress", seconds=60)
    assert response["status"] == "failed" and response["error"]["code"] == "validation_dead_lettered", response
