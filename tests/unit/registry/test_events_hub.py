"""The SSE stream's pure parts: which types a filter selects, how an org's tail of the log answers a resume,
and how log entries become frames (numbered by the log, so a client resumes exactly)."""
import json

import pytest

from services.registry.event_log import Entry
from services.registry.events_hub import STREAMED_TYPES, Tail, binding_keys, matching_types, org_of
from services.registry.handlers.events import frames, requested_types
from shared.contracts.errors import BadRequest


def entry(seq: int, event_type: str = "lora.updated") -> Entry:
    return Entry(seq=seq, type=event_type, event=json.dumps({"type": event_type}))


def test_the_log_binds_public_families_and_outcomes_never_internal_status_events():
    keys = binding_keys()
    assert "org.*.lora.#" in keys and "org.*.file.#" in keys and "org.*.response.completed" in keys
    assert not any("status.changed" in key or key.endswith("response.#") for key in keys)
    assert org_of("org.acme.lora.created") == "acme" and org_of("nonsense") is None


def test_type_filters_are_globs_over_the_public_types_responses_included():
    assert requested_types("lora.*") == {"lora.created", "lora.updated", "lora.deleted", "lora.validation.finished"}
    assert requested_types("file.created, lora.deleted") == {"file.created", "lora.deleted"}
    assert requested_types("response.*") == {"response.completed", "response.failed", "response.cancelled",
                                             "response.incomplete"}
    assert requested_types(None) is None and requested_types("*") is None  # all of them
    assert matching_types(["*"]) == set(STREAMED_TYPES)
    with pytest.raises(BadRequest) as caught:
        requested_types("validation.*")
    assert caught.value.param == "types"


def test_a_tail_answers_a_resume_only_when_it_holds_every_entry_after_it():
    tail = Tail()
    for seq in range(5, 9):
        tail.add(entry(seq))
    assert [e.seq for e in tail.after(6, known=8)] == [7, 8]
    assert tail.after(3, known=8) is None  # 4 and 5 are not all here: read the log
    assert tail.after(6, known=9) is None  # 9 was appended elsewhere
    tail.add(entry(12))  # another appender wrote 9..11: the tail starts again
    assert [e.seq for e in tail.after(11, known=12)] == [12] and tail.after(8, known=12) is None


def test_frames_carry_the_log_number_as_their_id():
    text = frames([entry(41, "lora.created"), entry(42, "file.deleted")]).decode()
    assert text == ('id: 41\nevent: lora.created\ndata: {"type": "lora.created"}\n\n'
                    'id: 42\nevent: file.deleted\ndata: {"type": "file.deleted"}\n\n')
