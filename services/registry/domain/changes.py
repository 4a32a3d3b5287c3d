"""PATCH: which models need a new validation record, and the edited document."""
from __future__ import annotations

from services.registry.domain.lora import LoraDocument, pending_record
from services.registry.domain.status import derive_status, latest_by_model
from shared.contracts.loras import LoraPatch

EDITABLE_TEXT = ("display_name", "description")


def models_needing_validation(document: LoraDocument, new_models: list[str]) -> list[str]:
    """Models added to the list whose latest record (if any, from an earlier listing) has not succeeded."""
    latest = latest_by_model(document.validations)
    current = set(document.supported_models)
    return [m for m in new_models
            if m not in current and (m not in latest or latest[m].status != "succeeded")]


def apply_patch(document: LoraDocument, patch: LoraPatch, now: int) -> LoraDocument | None:
    """The edited document with records for newly added models, or None when the patch changes nothing."""
    changes: dict = {}
    for field in EDITABLE_TEXT:
        if field in patch.model_fields_set and getattr(patch, field) != getattr(document, field):
            changes[field] = getattr(patch, field)
    records = list(document.validations)
    models = document.supported_models
    if patch.supported_models is not None and patch.supported_models != document.supported_models:
        models = list(patch.supported_models)
        records += [pending_record(m, now) for m in models_needing_validation(document, models)]
        changes["supported_models"] = models
        changes["validations"] = records
    if not changes:
        return None
    changes.update(status=derive_status(models, records), updated_at=max(now, document.updated_at),
                   version=document.version + 1)
    return document.model_copy(update=changes)


def added_records(before: LoraDocument, after: LoraDocument):
    known = {r.id for r in before.validations}
    return [r for r in after.validations if r.id not in known]
