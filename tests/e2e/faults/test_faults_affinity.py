"""SIGKILL the worker that a LoRA's jobs are routed to: every job it held or that waited in its affinity queue
reaches the next worker (through the shared queue, once the affinity wait is over) and completes; none is lost."""
from __future__ import annotations

import time

from shared.contracts.topology import inference_queue
from tests.e2e.faults.harness import MODEL, is_terminal_response

JOBS = 6


def hot_queues(broker) -> dict[str, int]:
    prefix = inference_queue(MODEL.split("/")[-1]) + ".hot."
    return {name: count for name, count in broker.queue_lengths().items() if name.startswith(prefix)}


def test_jobs_routed_to_a_killed_worker_reach_the_next_one(fault_topology, broker, api, trained_adapter, figures):
    registered = api.register("affinity-kill", api.upload_adapter(trained_adapter))
    assert api.wait_lora_done(registered.name)["status"] == "ready"
    assert hot_queues(broker), "the worker took no seat in the affinity ring"

    # long enough that the worker is still generating the first ones when it dies
    sent = [api.background(lora=registered.name)["id"] for _ in range(JOBS)]
    api.wait_response(sent[0], lambda doc: doc["status"] == "in_progress")
    killed_at = time.monotonic()
    fault_topology.sigkill("gpu-worker")
    fault_topology.restart("gpu-worker")  # it takes the dead worker's seat (the lowest free one)

    done = [api.wait_response(response_id, is_terminal_response) for response_id in sent]
    assert all(doc["status"] in ("completed", "incomplete") for doc in done), [doc["status"] for doc in done]
    figures["worker SIGKILL holding affinity-routed jobs: kill to all completed (s)"] = \
        f"{time.monotonic() - killed_at:.1f} ({JOBS} jobs)"
