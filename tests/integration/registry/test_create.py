"""POST /v1/loras as the seed describes it: the body, the jobs it queues, and every refusal."""
import asyncio
import uuid

from shared.bus.base import BusError
from shared.contracts import topology as t
from shared.contracts.messages import ValidateAdapter
from tests.integration.registry.conftest import KIMI, TINY

LORA_FIELDS = {"id", "object", "name", "display_name", "description", "supported_models", "config_file_id",
               "weights_file_id", "status", "validations", "created_at", "updated_at"}
RECORD_FIELDS = {"id", "model", "status", "response_id", "result_code", "result_message", "created_at",
                 "started_at", "finished_at"}


async def test_create_answers_the_lora_and_queues_one_job_per_model(stack):
    validator = await stack.tap_queue(t.VALIDATION_QUEUE)
    config, weights = await stack.adapter_files()
    resp = await stack.create(models=(TINY, KIMI), files=(config, weights), display_name="Funnier v1",
                              description="punchier replies")
    assert resp.status == 200
    lora = await resp.json()
    assert set(lora) == LORA_FIELDS
    assert uuid.UUID(lora["id"]) and lora["object"] == "lora" and lora["name"] == "funnier-v1"
    assert (lora["status"], lora["supported_models"]) == ("pending_validation", [TINY, KIMI])
    assert (lora["config_file_id"], lora["weights_file_id"]) == (config, weights)
    assert (lora["display_name"], lora["description"]) == ("Funnier v1", "punchier replies")
    assert [r["model"] for r in lora["validations"]] == [TINY, KIMI]
    for record in lora["validations"]:
        assert set(record) == RECORD_FIELDS
        assert record["status"] == "pending" and record["response_id"].startswith("resp_")
        assert record["finished_at"] is None and record["result_code"] is None

    jobs = [ValidateAdapter.from_event((await validator.next()).event) for _ in range(2)]
    by_model = {job.model: job for job in jobs}
    assert set(by_model) == {TINY, KIMI}
    for record in lora["validations"]:
        job = by_model[record["model"]]
        assert (job.validation_id, job.response_id, job.org_id) == (record["id"], record["response_id"], "org-a")
        assert job.model_slug == stack.platform.catalogue.get(record["model"]).slug
        assert (job.adapter.lora_id, job.adapter.config_file_id, job.adapter.weights_file_id) == \
            (lora["id"], config, weights)
        assert job.adapter.config_object_key and job.adapter.weights_object_key
        assert job.adapter.weights_object_key != job.adapter.config_object_key


async def test_the_new_lora_is_announced_with_its_blob_keys(stack):
    events = await stack.tap_events("org.org-a.lora.#")
    lora = await (await stack.create()).json()
    created = await events.until(lambda e: e.type == "lora.created")
    assert created.data["lora"] == lora and created.data["org_id"] == "org-a" and created.data["version"] == 1
    assert created.data["adapter"]["lora_id"] == lora["id"]


async def test_twenty_concurrent_creates_of_one_name_give_one_lora(stack):
    files = await stack.adapter_files()
    responses = await asyncio.gather(*(stack.create(files=files) for _ in range(20)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] + [409] * 19
    for resp in responses:
        if resp.status == 409:
            assert resp.headers["x-should-retry"] == "false"
            error = (await resp.json())["error"]
            assert error["param"] == "name" and error["type"] == "conflict_error"
    listed = await (await stack.http.get("/v1/loras", headers=stack.auth())).json()
    assert len(listed["data"]) == 1


async def test_the_same_name_in_another_org_is_fine(stack):
    assert (await stack.create(org="org-a")).status == 200
    assert (await stack.create(org="org-b")).status == 200


async def test_an_unknown_model_is_named(stack):
    resp = await stack.create(models=(TINY, "acme/not-a-model"))
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["param"] == "supported_models" and "acme/not-a-model" in error["message"]


async def test_every_name_problem_is_reported_and_uuid_shapes_are_refused(stack):
    resp = await stack.create(name="-Bad_Name")
    error = (await resp.json())["error"]
    assert resp.status == 400 and error["param"] == "name"
    assert "[a-z0-9-]" in error["message"] and "start and end" in error["message"]
    resp = await stack.create(name=str(uuid.uuid4()))
    assert resp.status == 400 and "UUID" in (await resp.json())["error"]["message"]


async def test_another_orgs_file_is_not_found(stack):
    config_b, weights_b = await stack.adapter_files("org-b")
    config_a, weights_a = await stack.adapter_files("org-a")
    resp = await stack.create(files=(config_b, weights_a))
    error = (await resp.json())["error"]
    assert resp.status == 400 and error["param"] == "config_file_id" and error["code"] == "file_not_found"
    resp = await stack.create(files=(config_a, weights_b))
    error = (await resp.json())["error"]
    assert resp.status == 400 and error["param"] == "weights_file_id" and config_b not in error["message"]


async def test_a_file_uploaded_for_another_purpose_is_refused(stack):
    config = await stack.upload(purpose="fine-tune")
    _, weights = await stack.adapter_files()
    resp = await stack.create(files=(config, weights))
    error = (await resp.json())["error"]
    assert resp.status == 400 and error["param"] == "config_file_id" and error["code"] == "invalid_file_purpose"


async def test_missing_fields_and_unknown_fields_are_400s(stack):
    resp = await stack.http.post("/v1/loras", json={"name": "x1"}, headers=stack.auth())
    assert resp.status == 400 and (await resp.json())["error"]["param"] in ("supported_models", "config_file_id",
                                                                            "weights_file_id")
    resp = await stack.create(colour="blue")
    assert resp.status == 400 and (await resp.json())["error"]["param"] == "colour"


async def test_a_refused_create_stores_and_queues_nothing(stack):
    validator = await stack.tap_queue(t.VALIDATION_QUEUE)
    assert (await stack.create(models=("acme/nope",))).status == 400
    assert (await stack.create(name="ok-name")).status == 200
    job = ValidateAdapter.from_event((await validator.next()).event)
    assert job.adapter.name == "ok-name" and validator.pending() == []


async def test_when_jobs_cannot_be_queued_the_create_is_undone_and_may_be_retried(stack, monkeypatch):
    files = await stack.adapter_files()
    publish = stack.platform.bus.publish

    async def broken_publish(message, **kwargs):
        if isinstance(message, ValidateAdapter):
            raise BusError("broker unavailable")
        return await publish(message, **kwargs)

    monkeypatch.setattr(stack.platform.bus, "publish", broken_publish)
    resp = await stack.create(files=files)
    assert resp.status == 503 and resp.headers["x-should-retry"] == "true"
    assert (await stack.http.get("/v1/loras/funnier-v1", headers=stack.auth())).status == 404
    monkeypatch.setattr(stack.platform.bus, "publish", publish)
    assert (await stack.create(files=files)).status == 200
