"""At start-up the registry validates again every LoRA whose records were made under other engine
capabilities than the catalogue's today (e.g. an engine that now applies more of an adapter)."""
from services.registry.revalidation import revalidate_outdated
from shared.contracts import topology as t
from shared.contracts.messages import ValidateAdapter
from tests.integration.registry.conftest import TINY


async def test_an_outdated_record_gets_a_new_job_and_an_up_to_date_one_does_not(stack):
    jobs = await stack.tap_queue(t.VALIDATION_QUEUE)
    resp = await stack.create("old-engine")
    assert resp.status == 200
    first = ValidateAdapter.from_event((await jobs.next()).event)
    repository = stack.registry.repository
    document = await repository.get("org-a", name="old-engine")
    assert document.engines == {first.validation_id: "torch/1"}
    # its record finished under an engine that applied less than today's
    finished = document.validations[0].model_copy(update={"status": "failed", "result_code": "x"})
    older = document.model_copy(update={"validations": [finished], "status": "failed",
                                        "engines": {first.validation_id: "torch/0"}, "version": document.version + 1})
    assert await repository.replace(document, older)

    assert await revalidate_outdated(stack.registry) == 1
    again = ValidateAdapter.from_event((await jobs.next()).event)
    assert again.model == TINY and again.validation_id != first.validation_id
    lora = await (await stack.http.get("/v1/loras/old-engine", headers=stack.auth())).json()
    assert lora["status"] == "pending_validation"
    assert [r["status"] for r in lora["validations"]] == ["failed", "pending"]
    assert await revalidate_outdated(stack.registry) == 0  # stamped today: nothing more
    assert jobs.pending() == []
