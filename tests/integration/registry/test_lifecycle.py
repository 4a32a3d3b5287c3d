"""Fetching, listing, patching and deleting LoRAs, each scoped to the caller's org."""
import time
from datetime import UTC, datetime

from services.registry.operations import apply_status
from shared.contracts import topology as t
from shared.contracts.messages import SEQ_GPU_DONE, ValidateAdapter, ValidationStatusChanged
from tests.integration.registry.conftest import KIMI, TINY


async def test_fetch_by_name_and_by_id_answer_the_same_object(stack):
    created = await (await stack.create()).json()
    for ref in ("funnier-v1", created["id"], created["id"].upper()):
        resp = await stack.http.get(f"/v1/loras/{ref}", headers=stack.auth())
        assert resp.status == 200 and await resp.json() == created


async def test_list_pages_with_after_limit_and_order(stack):
    files = await stack.adapter_files()
    names = [f"lora-{i}" for i in range(5)]
    ids = [(await (await stack.create(name=n, files=files)).json())["id"] for n in names]
    page = await (await stack.http.get("/v1/loras", params={"limit": 2, "order": "asc"}, headers=stack.auth())).json()
    assert page["object"] == "list" and [d["id"] for d in page["data"]] == ids[:2]
    assert page["has_more"] is True and (page["first_id"], page["last_id"]) == (ids[0], ids[1])
    seen = [d["id"] for d in page["data"]]
    while page["has_more"]:
        page = await (await stack.http.get("/v1/loras", params={"limit": 2, "order": "asc", "after": page["last_id"]},
                                           headers=stack.auth())).json()
        seen += [d["id"] for d in page["data"]]
    assert seen == ids
    newest_first = await (await stack.http.get("/v1/loras", headers=stack.auth())).json()
    assert [d["id"] for d in newest_first["data"]] == ids[::-1] and newest_first["has_more"] is False
    bad = await stack.http.get("/v1/loras", params={"limit": 0}, headers=stack.auth())
    assert bad.status == 400 and (await bad.json())["error"]["param"] == "limit"


async def test_another_org_sees_none_of_it(stack):
    created = await (await stack.create(org="org-a")).json()
    for ref in ("funnier-v1", created["id"]):
        for method in ("GET", "DELETE"):
            resp = await stack.http.request(method, f"/v1/loras/{ref}", headers=stack.auth("org-b"))
            assert resp.status == 404 and (await resp.json())["error"]["code"] == "lora_not_found"
        resp = await stack.http.patch(f"/v1/loras/{ref}", json={"display_name": "mine"}, headers=stack.auth("org-b"))
        assert resp.status == 404
    listed = await (await stack.http.get("/v1/loras", headers=stack.auth("org-b"))).json()
    assert listed["data"] == [] and listed["has_more"] is False
    resp = await stack.http.get("/v1/loras", params={"after": created["id"]}, headers=stack.auth("org-b"))
    assert resp.status == 400
    assert (await stack.http.get("/v1/loras/funnier-v1", headers=stack.auth("org-a"))).status == 200


async def test_patch_adds_records_only_for_models_that_need_one(stack):
    validator = await stack.tap_queue(t.VALIDATION_QUEUE)
    created = await (await stack.create(models=(TINY,))).json()
    await validator.next()
    tiny = created["validations"][0]
    await apply_status(stack.registry, ValidationStatusChanged(
        lora_id=created["id"], org_id="org-a", model=TINY, validation_id=tiny["id"], status="succeeded",
        seq=SEQ_GPU_DONE, occurred_at=datetime.fromtimestamp(time.time(), UTC)))

    resp = await stack.http.patch("/v1/loras/funnier-v1", json={"supported_models": [TINY, KIMI],
                                                                "description": "now on Kimi too"},
                                  headers=stack.auth())
    assert resp.status == 200
    patched = await resp.json()
    assert patched["supported_models"] == [TINY, KIMI] and patched["description"] == "now on Kimi too"
    assert [(r["model"], r["status"]) for r in patched["validations"]] == [(TINY, "succeeded"), (KIMI, "pending")]
    assert patched["status"] == "pending_validation"
    job = ValidateAdapter.from_event((await validator.next()).event)
    assert (job.model, job.validation_id, job.response_id) == \
        (KIMI, patched["validations"][1]["id"], patched["validations"][1]["response_id"])

    again = await (await stack.http.patch("/v1/loras/funnier-v1", json={"supported_models": [TINY, KIMI]},
                                          headers=stack.auth())).json()
    assert len(again["validations"]) == 2
    resp = await stack.http.patch("/v1/loras/funnier-v1", json={"supported_models": ["acme/nope"]},
                                  headers=stack.auth())
    assert resp.status == 400 and "acme/nope" in (await resp.json())["error"]["message"]
    assert validator.pending() == []


async def test_patch_publishes_an_update_with_a_higher_version(stack):
    events = await stack.tap_events("org.org-a.lora.#")
    created = await (await stack.create()).json()
    await events.until(lambda e: e.type == "lora.created")
    await stack.http.patch(f"/v1/loras/{created['id']}", json={"display_name": "Funnier"}, headers=stack.auth())
    updated = await events.until(lambda e: e.type == "lora.updated")
    assert updated.data["version"] == 2 and updated.data["lora"]["display_name"] == "Funnier"


async def test_delete_answers_the_deleted_object_and_announces_it(stack):
    events = await stack.tap_events("org.org-a.lora.deleted")
    created = await (await stack.create()).json()
    resp = await stack.http.delete("/v1/loras/funnier-v1", headers=stack.auth())
    assert resp.status == 200 and await resp.json() == {"id": created["id"], "object": "lora", "deleted": True}
    deleted = (await events.next()).event
    assert deleted.data["lora"]["id"] == created["id"] and deleted.data["version"] == 2
    assert (await stack.http.get(f"/v1/loras/{created['id']}", headers=stack.auth())).status == 404
    assert (await stack.http.delete("/v1/loras/funnier-v1", headers=stack.auth())).status == 404
    assert (await stack.create()).status == 200  # the name is free again
