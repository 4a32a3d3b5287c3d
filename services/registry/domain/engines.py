"""Which engine's capabilities each validation record was made under, and which records they outdate.

A record is checked against the capabilities of the engine that serves its model (the validator
refuses modules the engine would not apply). When those change (another engine, or one that now
applies more or less), a record made under the old ones says nothing about today's serving: the
model is validated again, as if newly added. Records made before fingerprints existed count as
outdated once.
"""
from __future__ import annotations

from services.registry.domain.lora import LoraDocument, pending_record
from services.registry.domain.status import TERMINAL, derive_status, latest_by_model


def stamp(document: LoraDocument, fingerprints: dict[str, str]) -> LoraDocument:
    """The document with every record that has none given its model's current engine fingerprint."""
    missing = {r.id: fingerprints[r.model] for r in document.validations
               if r.id not in document.engines and r.model in fingerprints}
    if not missing:
        return document
    return document.model_copy(update={"engines": {**document.engines, **missing}})


def outdated_models(document: LoraDocument, fingerprints: dict[str, str]) -> list[str]:
    """Supported models whose latest record is finished under other engine capabilities than today's."""
    latest = latest_by_model(document.validations)
    return [model for model in document.supported_models
            if model in latest and model in fingerprints and latest[model].status in TERMINAL
            and document.engines.get(latest[model].id) != fingerprints[model]]


def revalidated(document: LoraDocument, models: list[str], fingerprints: dict[str, str],
                now: int) -> LoraDocument:
    records = [*document.validations, *(pending_record(model, now) for model in models)]
    changed = document.model_copy(update={
        "validations": records, "status": derive_status(document.supported_models, records),
        "updated_at": max(now, document.updated_at), "version": document.version + 1})
    return stamp(changed, fingerprints)
