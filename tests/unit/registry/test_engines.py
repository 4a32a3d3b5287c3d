"""Records made under other engine capabilities than today's are validated again."""
from services.registry.domain.engines import outdated_models, revalidated, stamp
from services.registry.domain.fold import fold
from shared.contracts.messages import SEQ_GPU_DONE, SEQ_VALIDATOR_FAILED
from tests.unit.registry.documents import KIMI, TINY, document, status_event

NOW = 1_900_000_000
TODAY = {TINY: "torch/1", KIMI: "vllm/2"}


def finished(doc, model, status="succeeded", seq=SEQ_GPU_DONE):
    return fold(doc, status_event(doc, model, status, NOW - 10, seq))


def test_new_records_are_stamped_with_their_models_engine_and_stamps_are_kept():
    doc = stamp(document(models=(TINY, KIMI)), TODAY)
    assert sorted(doc.engines.values()) == ["torch/1", "vllm/2"]
    assert stamp(doc, {TINY: "torch/9", KIMI: "vllm/9"}) is doc  # made under the old ones: they stay


def test_a_finished_record_made_under_other_capabilities_is_outdated_a_running_one_is_not():
    doc = stamp(document(models=(TINY, KIMI)), {TINY: "torch/1", KIMI: "vllm/1"})
    doc = finished(doc, KIMI, "failed", SEQ_VALIDATOR_FAILED)  # e.g. refused for kv_b_proj under vllm/1
    assert outdated_models(doc, TODAY) == [KIMI]  # tiny is still pending: its verdict is not in yet
    assert outdated_models(finished(doc, TINY), TODAY) == [KIMI]


def test_revalidating_appends_a_pending_record_stamped_today_and_reopens_the_lora():
    doc = finished(stamp(document(models=(KIMI,)), {KIMI: "vllm/1"}), KIMI)
    assert doc.status == "ready"
    after = revalidated(doc, [KIMI], TODAY, NOW)
    new = after.validations[-1]
    assert (new.model, new.status, after.engines[new.id]) == (KIMI, "pending", "vllm/2")
    assert after.status == "pending_validation" and after.version == doc.version + 1
    assert outdated_models(after, TODAY) == []


def test_records_from_before_fingerprints_count_as_outdated_once():
    doc = finished(document(models=(TINY,)), TINY)
    assert doc.engines == {} and outdated_models(doc, TODAY) == [TINY]
