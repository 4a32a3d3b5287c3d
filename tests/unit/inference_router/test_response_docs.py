"""Folding status events into a stored Response: any duplication and order gives the same document."""
from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from services.inference_router.response_docs import document_from_event, fold, new_document, render
from shared.contracts.messages import ChatMessage, ResponseStatusChanged

AT = datetime(2026, 11, 27, tzinfo=UTC)


def event(status, seq, **fields):
    return ResponseStatusChanged(response_id="resp_1", org_id="org-a", model="m", status=status, seq=seq,
                                 occurred_at=AT, **fields)


LIFE = [event("in_progress", 1, input=[ChatMessage(role="user", content="hi")]),
        event("completed", 2, output_text="hello", prompt_tokens=2, completion_tokens=1, finish_reason="stop")]


def replay(events, doc):
    for ev in events:
        changes = fold(doc, ev)
        if changes is not None:
            doc = {**doc, **changes}
    return doc


def queued():
    return new_document(response_id="resp_1", org_id="org-a", model="m", messages=[], created_at=1)


@given(st.lists(st.sampled_from(LIFE), min_size=0, max_size=6).map(lambda extra: extra + LIFE)
       .flatmap(st.permutations))
def test_any_order_and_duplication_folds_to_the_same_document(events):
    assert replay(events, queued()) == replay(LIFE, queued())


def test_a_terminal_status_never_changes():
    done = replay(LIFE, queued())
    assert fold(done, event("failed", 9, error={"code": "x", "message": "late"})) is None
    cancelled = {**queued(), "status": "cancelled"}
    assert fold(cancelled, LIFE[1]) is None


def test_another_orgs_event_does_not_touch_the_document():
    assert fold(queued(), event("in_progress", 1).model_copy(update={"org_id": "org-b"})) is None


def test_a_response_first_seen_through_its_events():
    doc = document_from_event(LIFE[1])
    doc = {**doc, **fold(doc, LIFE[1])}
    shown = render(doc)
    assert shown.status == "completed" and shown.output[0].content[0].text == "hello"
    assert shown.usage.total_tokens == 3 and shown.completed_at is not None


def test_incomplete_and_failed_render():
    incomplete = replay([event("incomplete", 2, output_text="cut", finish_reason="length")], queued())
    assert render(incomplete).incomplete_details == {"reason": "max_output_tokens"}
    failed = replay([event("failed", 2, error={"code": "load_failed", "message": "bad adapter"})], queued())
    assert render(failed).error.code == "load_failed" and render(failed).output == []
