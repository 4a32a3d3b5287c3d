"""The validator consumes jobs from the bus, reads only what it needs from the blob store, and
publishes `running`, then `failed` or a GPU validation job for the model's pool."""
from services.validator import codes
from shared.contracts.messages import SEQ_RUNNING, SEQ_VALIDATOR_FAILED, RunGpuValidation
from tests.integration.validator.conftest import TINY_SLUG, job
from tests.unit.validator.adapters import recipe, with_config


async def upload(service, files, config_key="orgs/acme/files/file-cfg", weights_key="orgs/acme/files/file-w"):
    await service.put(config_key, files.config)
    await service.put(weights_key, files.weights)


async def test_a_good_adapter_goes_on_to_the_models_gpu_pool(service):
    await upload(service, recipe("all_linear"))
    await service.submit(job())

    running = await service.statuses.next()
    assert running.event.data | {"occurred_at": None} == {
        "lora_id": "lora-1", "org_id": "acme", "model": "loraserve/kimi-k2-tiny", "validation_id": "val-1",
        "status": "running", "seq": SEQ_RUNNING, "result_code": None, "result_message": None, "occurred_at": None}
    assert running.routing_key == "org.acme.validation.status.changed"
    gpu = await service.gpu_jobs.next()
    gpu_job = RunGpuValidation.from_event(gpu.event)
    assert gpu_job.model_dump() == job().model_dump()
    assert gpu.routing_key == f"gpu-validate.{TINY_SLUG}" and gpu.event.correlationid == "req-val-1"
    assert [d.event.data["status"] for d in service.statuses.deliveries] == ["running"]


async def test_a_bad_adapter_fails_with_every_problem(service):
    await upload(service, with_config(recipe("attention"), task_type="SEQ_CLS", r=65))
    await service.submit(job())

    running, failed = await service.statuses.take(2)
    assert running.event.data["status"] == "running"
    assert failed.event.data["status"] == "failed" and failed.event.data["seq"] == SEQ_VALIDATOR_FAILED
    assert failed.event.data["result_code"] == codes.TASK_TYPE_UNSUPPORTED
    message = failed.event.data["result_message"]
    assert "task_type_unsupported" in message and "rank_exceeds_max" in message and "rank_mismatch" in message
    assert failed.event.correlationid == "req-val-1"
    assert service.gpu_jobs.deliveries == []


async def test_missing_blobs_and_unknown_models_fail_with_their_codes(service):
    await service.put("orgs/acme/files/only-config", recipe("attention").config)
    await service.submit(job("val-a", config_key="orgs/acme/files/none"))
    await service.submit(job("val-b", config_key="orgs/acme/files/only-config", weights_key="orgs/acme/files/none"))
    await service.submit(job("val-c", model="meta-llama/Llama-3-8B"))

    failed = {}
    for delivery in await service.statuses.take(6):
        if delivery.event.data["status"] == "failed":
            failed[delivery.event.data["validation_id"]] = delivery.event.data["result_code"]
    assert failed == {"val-a": codes.CONFIG_MISSING, "val-b": codes.WEIGHTS_MISSING, "val-c": codes.MODEL_UNKNOWN}


async def test_a_redelivered_job_gives_the_same_outcome_once(make_service):
    service = await make_service(failures=1)  # the first delivery loses the blob store mid-job
    await upload(service, recipe("attention"))
    await service.submit(job())

    gpu = await service.gpu_jobs.next()
    assert RunGpuValidation.from_event(gpu.event).validation_id == "val-1"
    first, second = await service.statuses.take(2)
    assert [(d.event.data["status"], d.event.data["seq"]) for d in (first, second)] == [("running", 1)] * 2
    assert len(service.gpu_jobs.deliveries) == 1
    assert await service.bus.queue_depth("loraserve.validator.jobs") == 0


async def test_only_the_header_of_the_weights_is_read(service):
    files = recipe("all_linear")
    await upload(service, files)
    await service.submit(job())
    await service.gpu_jobs.next()
    header_bytes = 8 + int.from_bytes(files.weights[:8], "little")
    assert service.blobs.bytes_read == len(files.config) + header_bytes < len(files.config) + len(files.weights)


async def test_a_model_without_a_deployed_pool_ends_unverified_right_after_the_static_checks(make_service):
    from shared.contracts.messages import SEQ_UNVERIFIED
    from shared.settings import Settings

    service = await make_service(settings=Settings(deployed_models={"loraserve/kimi-k2-tiny": False}))
    await upload(service, recipe("attention"))
    await service.submit(job())

    running, unverified = await service.statuses.take(2)
    assert running.event.data["status"] == "running"
    assert (unverified.event.data["status"], unverified.event.data["seq"]) == ("unverified", SEQ_UNVERIFIED)
    assert unverified.event.data["result_code"] == codes.ENGINE_NOT_DEPLOYED
    assert "no worker pool serves loraserve/kimi-k2-tiny" in unverified.event.data["result_message"]
    assert service.gpu_jobs.deliveries == []  # nothing waits 30 minutes for a pool that does not exist


async def test_a_statically_bad_adapter_still_fails_on_a_model_without_a_pool(make_service):
    from shared.settings import Settings

    service = await make_service(settings=Settings(deployed_models={"loraserve/kimi-k2-tiny": False}))
    await upload(service, with_config(recipe("attention"), r=65))
    await service.submit(job())
    _, failed = await service.statuses.take(2)
    assert failed.event.data["status"] == "failed" and failed.event.data["result_code"] != codes.ENGINE_NOT_DEPLOYED
