"""SIGKILL the validator or the worker in the middle of a validation job: after a restart the job is
redelivered and the validation still ends `succeeded`.

"In the middle" is made exact with the service's S3 fault proxy: the request for the LoRA's
file is held, so the service has taken the job (the validator has published `running`, the
worker has started the validation's Response) and waits on its blob store when it is killed.
"""
from __future__ import annotations

import time

from tests.reliability.harness import output_text, wait_until


def assert_succeeded(lora: dict) -> dict:
    assert lora["status"] == "ready", lora
    [record] = lora["validations"]
    assert record["status"] == "succeeded" and record["result_code"] is None, record
    return record


def test_a_validation_ends_succeeded_after_the_validator_is_killed_mid_job(topology, api, faults,
                                                                           trained_adapter, figures):
    files = api.upload_adapter(trained_adapter)
    held = faults["validator"].hold(files[0])  # the validator's first read: the adapter's config
    registered = api.register("validator-killed", files)
    held.wait_arrived(120)
    running = wait_until(lambda: api.lora(registered.name)["validations"][0]["status"] == "running",
                         "the validator's running status")
    assert running

    killed_at = time.monotonic()
    topology.sigkill("validator")
    faults["validator"].clear()
    restart = topology.restart("validator")

    record = assert_succeeded(api.wait_lora_done(registered.name))
    figures["validator SIGKILL mid-job: restart to ready (s)"] = f"{restart:.1f}"
    figures["validator SIGKILL mid-job: kill to `succeeded` (s)"] = f"{time.monotonic() - killed_at:.1f}"
    assert api.response(record["response_id"])["status"] in ("completed", "incomplete")


def test_a_validation_ends_succeeded_after_the_worker_is_killed_mid_job(topology, api, faults,
                                                                        trained_adapter, figures):
    files = api.upload_adapter(trained_adapter)
    held = faults["gpu-worker"].hold(files[1])  # the worker fetching the adapter's weights
    registered = api.register("worker-killed", files)
    held.wait_arrived(120)
    # the worker has started the validation request: its Response is in progress
    api.wait_response(registered.response_id, lambda doc: doc["status"] == "in_progress")

    killed_at = time.monotonic()
    topology.sigkill("gpu-worker")
    faults["gpu-worker"].clear()
    restart = topology.restart("gpu-worker")

    record = assert_succeeded(api.wait_lora_done(registered.name))
    figures["worker SIGKILL mid-validation: restart to ready (s)"] = f"{restart:.1f}"
    figures["worker SIGKILL mid-validation: kill to `succeeded` (s)"] = f"{time.monotonic() - killed_at:.1f}"
    response = api.wait_response(record["response_id"], lambda doc: doc["status"] != "in_progress")
    assert response["status"] in ("completed", "incomplete") and output_text(response), response
