"""PATCH: new records only for added models whose latest record has not succeeded; text edits."""
from services.registry.domain.changes import added_records, apply_patch, models_needing_validation
from services.registry.domain.fold import fold
from shared.contracts.loras import LoraPatch
from shared.contracts.messages import SEQ_GPU_DONE, SEQ_VALIDATOR_FAILED
from tests.unit.registry.documents import KIMI, TINY, document, status_event

NOW = 1_900_000_000


def succeeded(doc, model):
    return fold(doc, status_event(doc, model, "succeeded", NOW - 10, SEQ_GPU_DONE))


def test_adding_a_model_adds_one_pending_record_and_reopens_validation():
    doc = succeeded(document(), TINY)
    after = apply_patch(doc, LoraPatch(supported_models=[TINY, KIMI]), NOW)
    [new] = added_records(doc, after)
    assert (new.model, new.status, new.created_at) == (KIMI, "pending", NOW)
    assert new.response_id.startswith("resp_") and new.id.startswith("val_")
    assert after.status == "pending_validation" and after.version == doc.version + 1


def test_a_model_already_listed_gets_no_new_record():
    doc = document(models=(TINY,))
    assert models_needing_validation(doc, [TINY]) == []
    assert apply_patch(doc, LoraPatch(supported_models=[TINY]), NOW) is None


def test_a_readded_model_whose_latest_record_succeeded_is_not_validated_again():
    doc = succeeded(document(models=(TINY, KIMI)), KIMI)
    dropped = apply_patch(doc, LoraPatch(supported_models=[TINY]), NOW)
    assert added_records(doc, dropped) == []
    readded = apply_patch(dropped, LoraPatch(supported_models=[TINY, KIMI]), NOW)
    assert added_records(dropped, readded) == []


def test_a_readded_model_whose_latest_record_failed_is_validated_again():
    doc = document(models=(TINY, KIMI))
    doc = fold(doc, status_event(doc, KIMI, "failed", NOW - 5, SEQ_VALIDATOR_FAILED, code="bad"))
    dropped = apply_patch(doc, LoraPatch(supported_models=[TINY]), NOW)
    readded = apply_patch(dropped, LoraPatch(supported_models=[TINY, KIMI]), NOW)
    assert [r.model for r in added_records(dropped, readded)] == [KIMI]


def test_text_edits_change_only_what_was_sent():
    doc = document()
    after = apply_patch(doc, LoraPatch(display_name="Funnier v1"), NOW)
    assert after.display_name == "Funnier v1" and after.description is None
    assert after.validations == doc.validations and after.updated_at == NOW
    cleared = apply_patch(after, LoraPatch.model_validate({"display_name": None}), NOW)
    assert cleared.display_name is None


def test_an_empty_patch_changes_nothing():
    assert apply_patch(document(), LoraPatch(), NOW) is None
