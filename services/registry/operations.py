"""The registry's use cases: create, patch, delete, and folding a validation status change.

Documents are changed by compare-and-set on `version` (see repository.py) and retried
when a concurrent change won; the bus is published to only after the change is stored.
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
from services.registry.domain.status import TERMINAL
from services.registry.publishing import (
    publish_jobs,
    publish_lora_event,
    publish_validation_finished,
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
    try:
        await registry.repository.insert(document)
    except NameTaken:
        raise Conflict(f"A LoRA named {spec.name!r} already exists in your organization", param="name",
                       code="lora_name_taken") from None
    await recheck_stored(registry, document)
    try:
        await publish_jobs(registry, document, document.validations)
        await publish_lora_event(registry, "created", document)
    except Exception:
        # a LoRA whose jobs never went out would sit pending: undo it so that a retry starts clean
        log.exception("publishing a new LoRA failed; removed it", lora_id=document.id)
        await registry.repository.delete(document)
        raise ServiceUnavailable("Could not queue the validation jobs; please retry.", code="bus_unavailable",
                                 headers={"x-should-retry": "true"}) from None
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
        if await registry.repository.replace(before, after):
            break
    else:
        raise Conflict("The LoRA changed while it was being updated; please retry.", code="concurrent_update",
                       headers={"x-should-retry": "true"})
    # if publishing fails now, the new records end `unverified` by the sweeper's deadline
    await publish_jobs(registry, after, added_records(before, after))
    await publish_lora_event(registry, "updated", after)
    return after


async def delete_lora(registry: Registry, org_id: str, ref: str) -> LoraDocument:
    document = await find(registry, org_id, ref)
    if not await registry.repository.delete(document):
        raise NotFound(f"No LoRA named or with id {ref!r} in your organization", param="name",
                       code="lora_not_found")
    gone = document.model_copy(update={"version": document.version + 1})
    await publish_lora_event(registry, "deleted", gone)
    return gone


async def apply_status(registry: Registry, event: ValidationStatusChanged) -> bool:
    """Fold one status event; if it changed something, publish lora.updated (+ lora.validation.finished)."""
    for _ in range(CAS_ATTEMPTS):
        before = await registry.repository.by_validation(event.org_id, event.lora_id, event.validation_id)
        after = fold(before, event) if before is not None else None
        if after is None:
            return False
        if await registry.repository.replace(before, after):
            break
    else:
        raise ConcurrentChange(event.validation_id)
    await publish_lora_event(registry, "updated", after)
    record = finished_now(before, after, event.validation_id)
    if record is not None:
        await publish_validation_finished(registry, after, record)
    return True


async def republish(registry: Registry, event: ValidationStatusChanged) -> None:
    """A redelivered event that changes nothing: its first delivery may have stored the change and then
    failed to publish, so send the current state again (consumers keep the highest version)."""
    document = await registry.repository.by_validation(event.org_id, event.lora_id, event.validation_id)
    if document is None:
        return
    await publish_lora_event(registry, "updated", document)
    record = document.record(event.validation_id)
    if record is not None and record.status in TERMINAL:
        await publish_validation_finished(registry, document, record)


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
