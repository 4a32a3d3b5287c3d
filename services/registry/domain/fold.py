"""Folding validation status events into a LoRA document.

Events arrive at least once and in any order. A record's status only moves to a later
state (`status.is_later`); a terminal one never changes. `started_at` is the earliest
`running` seen and `updated_at` the latest event time, so any duplication or permutation
of one record's events folds to the same document, `version` included (it counts the
changes, and each distinct event changes the document exactly once).
"""
from __future__ import annotations

from services.registry.domain.lora import LoraDocument
from services.registry.domain.status import TERMINAL, derive_status, is_later
from shared.contracts.loras import ValidationRecord
from shared.contracts.messages import ValidationStatusChanged


def _seconds(event: ValidationStatusChanged) -> int:
    return int(event.occurred_at.timestamp())


def fold_record(record: ValidationRecord, event: ValidationStatusChanged) -> ValidationRecord | None:
    """The record after `event`, or None when the event changes nothing (duplicate, stale, terminal)."""
    at = _seconds(event)
    changes: dict = {}
    if event.status == "running" and (record.started_at is None or at < record.started_at):
        changes["started_at"] = at
    if is_later(event.status, record.status):
        changes["status"] = event.status
        if event.status in TERMINAL:
            changes.update(finished_at=at, result_code=event.result_code, result_message=event.result_message)
    return record.model_copy(update=changes) if changes else None


def fold(document: LoraDocument, event: ValidationStatusChanged) -> LoraDocument | None:
    """The document after `event`, or None when nothing changes (unknown record, other org, no-op)."""
    if event.org_id != document.org_id or event.lora_id != document.id:
        return None
    records = list(document.validations)
    index = next((i for i, r in enumerate(records) if r.id == event.validation_id), None)
    if index is None:
        return None
    folded = fold_record(records[index], event)
    if folded is None:
        return None
    records[index] = folded
    return document.model_copy(update={
        "validations": records,
        "status": derive_status(document.supported_models, records),
        "updated_at": max(document.updated_at, _seconds(event)),
        "version": document.version + 1,
    })


def finished_now(before: LoraDocument, after: LoraDocument, validation_id: str) -> ValidationRecord | None:
    """The record, if this change moved it into a terminal state."""
    old, new = before.record(validation_id), after.record(validation_id)
    if old is None or new is None or old.status in TERMINAL or new.status not in TERMINAL:
        return None
    return new
