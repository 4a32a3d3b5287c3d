"""The registry's use cases: create, patch, delete, and folding a validation status change.

Documents are changed by compare-and-set on `version` (see repository.py) and retried
when a concurrent change won. The public events of a change are stored with it (the document's
outbox) and published after it; jobs are published after the change is stored.
"""
from __future__ import annotations

import time
import uuid

from services.registry.context import Registry
from services.registry.domain.changes import added_records, apply_patch
from services.registry.domain.engines import stamp
from services.registry.domain.fold import finished_now, fold
from services.registry.domain.lora import LoraDocument, NewLora, create_document
from services.registry.domain.names import looks_like_uuid
from services.registry.publishing import (
    deletions,
    deliver,
    lora_event,
    outbox,
    publish_jobs,
    validation_finished_event,
)
from services.registry.quota import check_new_lora, check_validations, recheck_stored
from services.registry.repository import NameTaken
from shared.contracts.errors import Conflict, NotFound, ServiceUnavailable
from shared.contracts.loras import LoraPatch
from shared.contracts.messages import SEQ_UNVERIFIED, ValidationStatusChanged
from shared.logging import correlation_id, get_logger

log = get_logger("registry")
CAS_ATTEMPTS = 10


class ConcurrentChange(Exception):
    """The document kept changing under us; the caller may retry."""


async def find(registry: Registry, org_id: str, ref: str) -> LoraDocument:
    """A LoRA of the org by name or by UUID; another org's LoRA is simply not found."""
    if looks_like_uuid(ref):
        document = await registry.repository.get(org_id, lora_id=str(uuid.UUID(ref)))
    else:
        document = await registry.repository.get(org_id, name=ref)
    if document is None:
        raise NotFound(f"No LoRA named or with id {ref!r} in your organization", param="name",
                       code="lora_not_found")
    return document


async def create_lora(registry: Registry, spec: NewLora) -> LoraDocument:
    document = stamp(create_document(spec, time.time_ns()), registry.catalogue.engine_fingerprints())
    await check_new_lora(registry, spec.org_id, len(document.validations))
    created = lora_event(registry, "created", document)
    try:
        await registry.repository.insert(document, [created])
    except NameTaken:
        raise Conflict(f"A LoRA named {spec.name!r} already exists in your organization", param="name",
                       code="lora_name_taken") from None
    await recheck_stored(registry, document)
    try:
        await publish_jobs(registry, document, document.validations)
    except Exception:
        # a LoRA whose jobs never went out would sit pending: undo it so that a retry starts clean (its
        # lora.created leaves with it, unpublished: the sweeper leaves entries this young to their writer)
        log.exception("publishing a new LoRA failed; removed it", lora_id=document.id)
        await registry.repository.delete(document)
        raise ServiceUnavailable("Could not queue the validation jobs; please retry.", code="bus_unavailable",
                                 headers={"x-should-retry": "true"}) from None
    await deliver(registry, document, [created])
    log.info("lora created", lora_id=document.id, name=document.name, models=document.supported_models)
    return document


async def patch_lora(registry: Registry, org_id: str, ref: str, patch: LoraPatch) -> LoraDocument:
    for _ in range(CAS_ATTEMPTS):
        before = await find(registry, org_id, ref)
        after = apply_patch(before, patch, int(time.time()))
        if after is None:
            return before
        after = stamp(after, registry.catalogue.engine_fingerprints())
        await check_validations(registry, org_id, len(added_records(before, after)))
        events = [lora_event(registry, "updated", after)]
        if await registry.repository.replace(before, after, events):
            break
    else:
        raise Conflict("The LoRA changed while it was being updated; please retry.", code="concurrent_update",
                       headers={"x-should-retry": "true"})
    await deliver(registry, after, events)
    # if publishing fails now, the new records end `unverified` by the sweeper's deadline
    await publish_jobs(registry, after, added_records(before, after))
    return after


async def delete_lora(registry: Registry, org_id: str, ref: str) -> LoraDocument:
    """Keep the lora.deleted event, delete the document if it did not change meanwhile, publish the event."""
    for _ in range(CAS_ATTEMPTS):
        document = await find(registry, org_id, ref)
        gone = document.model_copy(update={"version": document.version + 1})
        key = registry.repository.key(document)
        # events still in its outbox go with the delete's: else the document would take them along
        events = [*await outbox(registry).pending(key), lora_event(registry, "deleted", gone)]
        await deletions(registry).prepare(events, key)
        if await registry.repository.delete(document, at_version=True):
            break
        await deletions(registry).drop(events)  # it changed or went meanwhile: look again
    else:
        raise Conflict("The LoRA changed while it was being deleted; please retry.", code="concurrent_update",
                       headers={"x-should-retry": "true"})
    await deletions(registry).deliver(events)
    return gone


async def apply_status(registry: Registry, event: ValidationStatusChanged) -> bool:
    """Fold one status event; if it changed something, store and publish lora.updated (+ lora.validation.finished)."""
    for _ in range(CAS_ATTEMPTS):
        before = await registry.repository.by_validation(event.org_id, event.lora_id, event.validation_id)
        after = fold(before, event) if before is not None else None
        if after is None:
            return False
        events = [lora_event(registry, "updated", after)]
        record = finished_now(before, after, event.validation_id)
        if record is not None:
            events.append(validation_finished_event(registry, after, record))
        if await registry.repository.replace(before, after, events):
            break
    else:
        raise ConcurrentChange(event.validation_id)
    await deliver(registry, after, events)
    return True


async def republish(registry: Registry, event: ValidationStatusChanged) -> None:
    """A redelivered event that changes nothing: its first delivery may have stored the change and then
    stopped before publishing, so publish what the LoRA's outbox still holds (same CloudEvents ids)."""
    await outbox(registry).flush_document({"org_id": event.org_id, "id": event.lora_id})


async def mark_unverified(registry: Registry, *, org_id: str, lora_id: str, validation_id: str, model: str,
                          code: str, message: str) -> bool:
    """End a record `unverified` (dead-lettered job, deadline passed) and log it like any status change."""
    event = ValidationStatusChanged(lora_id=lora_id, org_id=org_id, model=model, validation_id=validation_id,
                                    status="unverified", seq=SEQ_UNVERIFIED, result_code=code,
                                    result_message=message)
    changed = await apply_status(registry, event)
    if changed:
        await registry.bus.publish(event, source=registry.source, correlation_id=correlation_id.get())
        log.info("validation unverified", lora_id=lora_id, validation_id=validation_id, code=code)
    return changed
