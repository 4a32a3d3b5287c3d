"""Folding validation status events: later states win, terminal ones are final, and any duplication or
permutation of a valid event sequence (or a replay of the whole log) gives the same document."""
from hypothesis import given, settings
from hypothesis import strategies as st

from services.registry.domain.fold import finished_now, fold
from shared.contracts.messages import SEQ_GPU_DONE, SEQ_RUNNING, SEQ_UNVERIFIED, SEQ_VALIDATOR_FAILED
from tests.unit.registry.documents import KIMI, TINY, document, status_event

THIRD = "third/model"
T = 1_800_000_000  # the documents are created at T


def fold_all(doc, events):
    for event in events:
        doc = fold(doc, event) or doc
    return doc


def test_a_record_runs_then_succeeds_and_the_lora_becomes_ready():
    doc = document()
    running = fold(doc, status_event(doc, TINY, "running", T + 100, SEQ_RUNNING))
    assert running.validations[0].status == "running" and running.validations[0].started_at == T + 100
    assert running.status == "pending_validation" and running.version == doc.version + 1
    done = fold(running, status_event(doc, TINY, "succeeded", T + 130, SEQ_GPU_DONE))
    assert done.validations[0].status == "succeeded" and done.validations[0].finished_at == T + 130
    assert done.status == "ready" and done.updated_at == T + 130


def test_failure_keeps_its_code_and_message_and_fails_the_lora():
    doc = document()
    failed = fold(doc, status_event(doc, TINY, "failed", T + 100, SEQ_VALIDATOR_FAILED, code="rank_too_large"))
    record = failed.validations[0]
    assert (record.status, record.result_code, record.result_message) == \
        ("failed", "rank_too_large", "rank_too_large happened")
    assert failed.status == "failed"


def test_a_terminal_state_never_changes():
    doc = document()
    failed = fold(doc, status_event(doc, TINY, "failed", T + 100, SEQ_VALIDATOR_FAILED, code="bad"))
    assert fold(failed, status_event(doc, TINY, "succeeded", T + 200, SEQ_GPU_DONE)) is None
    assert fold(failed, status_event(doc, TINY, "unverified", T + 300, SEQ_UNVERIFIED, code="late")) is None


def test_a_stale_running_after_the_outcome_only_fills_started_at():
    doc = document()
    done = fold(doc, status_event(doc, TINY, "succeeded", T + 130, SEQ_GPU_DONE))
    late = fold(done, status_event(doc, TINY, "running", T + 100, SEQ_RUNNING))
    assert late.validations[0].status == "succeeded" and late.validations[0].started_at == T + 100


def test_events_of_another_org_or_lora_or_record_change_nothing():
    doc = document()
    other_org = status_event(doc, TINY, "running", T + 100, SEQ_RUNNING).model_copy(update={"org_id": "other"})
    other_lora = status_event(doc, TINY, "running", T + 100, SEQ_RUNNING).model_copy(update={"lora_id": "x"})
    unknown = status_event(doc, TINY, "running", T + 100, SEQ_RUNNING, validation_id="val_unknown")
    assert fold(doc, other_org) is None and fold(doc, other_lora) is None and fold(doc, unknown) is None


def test_finished_now_names_the_record_only_on_its_terminal_step():
    doc = document()
    running = fold(doc, status_event(doc, TINY, "running", T + 100, SEQ_RUNNING))
    done = fold(running, status_event(doc, TINY, "succeeded", T + 130, SEQ_GPU_DONE))
    record_id = doc.validations[0].id
    assert finished_now(doc, running, record_id) is None
    assert finished_now(running, done, record_id).status == "succeeded"


# -- the property ------------------------------------------------------------------------------------
PATHS = st.sampled_from([
    (), ("running",), ("succeeded",), ("failed",), ("unverified",),
    ("running", "succeeded"), ("running", "failed"), ("running", "unverified"),
])
SEQ = {"running": SEQ_RUNNING, "failed": SEQ_VALIDATOR_FAILED, "succeeded": SEQ_GPU_DONE,
       "unverified": SEQ_UNVERIFIED}


@st.composite
def logs(draw):
    """A valid event log for a three-model LoRA, then a duplicated and shuffled delivery of it."""
    doc = document(models=(TINY, KIMI, THIRD))
    log = []
    for model in (TINY, KIMI, THIRD):
        at = draw(st.integers(1_800_000_000, 1_800_000_100))
        for step, status in enumerate(draw(PATHS)):
            code = None if status in ("running", "succeeded") else f"{status}_code"
            log.append(status_event(doc, model, status, at + 10 * step, SEQ[status], code=code))
    extra = draw(st.lists(st.sampled_from(log), max_size=8)) if log else []
    delivered = draw(st.permutations(log + extra))
    return doc, log, delivered


@settings(max_examples=300, deadline=None)
@given(logs())
def test_any_duplication_and_permutation_folds_to_the_same_document(case):
    doc, log, delivered = case
    assert fold_all(doc, delivered) == fold_all(doc, log)


@settings(max_examples=100, deadline=None)
@given(logs())
def test_replaying_the_log_changes_nothing(case):
    doc, log, _ = case
    once = fold_all(doc, log)
    assert fold_all(once, log) == once
