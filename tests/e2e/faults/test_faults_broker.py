"""Restart RabbitMQ (the suite's private node) while jobs and events are in flight: every service
reconnects on its own, nothing in flight is lost, and every LoRA ends in a terminal, correct state.

In flight when the broker stops: a static validation (the validator is held reading the
adapter), a GPU validation (the worker is held fetching it) and a background response being
generated. Their holds are released while the broker is down, so the services finish that
work with nowhere to publish it and no channel to ack on; the jobs must be redelivered and
redone once the broker is back.
"""
from __future__ import annotations

import time

from tests.e2e.faults.harness import EventTap, is_terminal_response, wait_until

OUTAGE_SECONDS = 12.0  # longer than a publish may wait for the connection (10 s)


def test_every_service_recovers_from_a_broker_restart_and_every_lora_ends_correct(
        fault_topology, broker, api, faults, trained_adapter, figures):
    static_files, gpu_files, later_files = (api.upload_adapter(trained_adapter) for _ in range(3))
    held_static = faults["validator"].hold(static_files[0])
    held_gpu = faults["gpu-worker"].hold(gpu_files[1])
    in_static = api.register("restart-static", static_files)
    in_gpu = api.register("restart-gpu", gpu_files)
    held_static.wait_arrived(120)
    held_gpu.wait_arrived(120)
    background = api.background()
    api.wait_response(background["id"], lambda doc: doc["status"] != "queued")

    broker.stop_app()
    down_at = time.monotonic()
    faults["validator"].clear()
    faults["gpu-worker"].clear()
    # the registry cannot queue a new LoRA's jobs: it refuses the LoRA and keeps nothing of it
    refused = api.create_lora("restart-later", *later_files)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "bus_unavailable", refused.text
    assert refused.headers.get("x-should-retry") == "true"
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
    broker.start_app()
    up_at = time.monotonic()

    wait_until(fault_topology.all_ready, "every service ready again")
    ready_after = time.monotonic() - up_at
    tap = EventTap(api).start()
    later = api.register("restart-later", later_files)  # the refused name is free: nothing was left

    for registered in (in_static, in_gpu, later):
        lora = api.wait_lora_done(registered.name)
        assert lora["status"] == "ready", lora
        assert [r["status"] for r in lora["validations"]] == ["succeeded"], lora
    loras_after = time.monotonic() - up_at
    done = api.wait_response(background["id"], is_terminal_response)
    assert done["status"] in ("completed", "incomplete"), done

    # the router's LoRA read model, file-ingest's reference counts and the SSE fan-out follow new events
    served = wait_until(lambda: (resp := api.chat(later.name)).status_code == 200 and resp,
                        "a request with the LoRA created after the restart")
    assert served.json()["choices"][0]["message"]["content"] is not None
    wait_until(lambda: any(e.get("lora_id") == later.lora["id"]
                           for e in fault_topology.log_events("file-ingest", "file_refs_updated")),
               "file-ingest counting the new LoRA's files")
    assert api.delete_file(later.config_file_id).status_code == 409
    wait_until(lambda: tap.saw("lora.created", later.name), "lora.created on GET /v1/events")
    tap.stop()

    figures["broker restart: outage (s)"] = f"{OUTAGE_SECONDS:.0f}"
    figures["broker restart: broker up to every service ready (s)"] = f"{ready_after:.1f}"
    figures["broker restart: broker up to every in-flight LoRA `succeeded` (s)"] = f"{loras_after:.1f}"
