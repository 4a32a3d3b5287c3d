"""What the registry puts on the bus: one validation job per new record, and the public lora.* events.

The public events go through the LoRA document's outbox (shared/bus/outbox.py): each change stores
its events in the same update (`repository.insert/replace`), publishes them after, and pulls each
one once published; the sweeper publishes what a crash or a bus outage left behind, with the same
CloudEvents id. Every `lora.*` event carries the document's `version`, so a consumer (the router's
read model) keeps the newest it has seen and ignores re-deliveries and stragglers.
"""
from __future__ import annotations

from typing import Any

from services.registry.context import Registry
from services.registry.domain.lora import LoraDocument
from services.registry.repository import KEY_FIELDS
from shared.bus.outbox import DeletionOutbox, DocumentOutbox, outbox_entry
from shared.contracts.loras import ValidationRecord
from shared.contracts.messages import (
    LoraCreated,
    LoraDeleted,
    LoraUpdated,
    LoraValidationFinished,
    ValidateAdapter,
)
from shared.logging import correlation_id

LORA_EVENTS = {"created": LoraCreated, "updated": LoraUpdated, "deleted": LoraDeleted}


def validation_jobs(registry: Registry, document: LoraDocument,
                    records: list[ValidationRecord]) -> list[ValidateAdapter]:
    return [
        ValidateAdapter(validation_id=record.id, org_id=document.org_id, model=record.model,
                        model_slug=registry.catalogue.get(record.model).slug, response_id=record.response_id,
                        adapter=document.adapter)
        for record in records
    ]


async def publish_jobs(registry: Registry, document: LoraDocument, records: list[ValidationRecord]) -> None:
    for job in validation_jobs(registry, document, records):
        await registry.bus.publish(job, source=registry.source, correlation_id=correlation_id.get())


def lora_event(registry: Registry, kind: str, document: LoraDocument) -> dict[str, Any]:
    """The outbox entry of a lora.created|updated|deleted event for `document` as stored."""
    message = LORA_EVENTS[kind](org_id=document.org_id, lora=document.public().model_dump(mode="json"),
                                adapter=document.adapter, version=document.version)
    return outbox_entry(message, source=registry.source, correlation_id=correlation_id.get())


def validation_finished_event(registry: Registry, document: LoraDocument,
                              record: ValidationRecord) -> dict[str, Any]:
    message = LoraValidationFinished(org_id=document.org_id, lora=document.public().model_dump(mode="json"),
                                     adapter=document.adapter, version=document.version,
                                     validation=record.model_dump(mode="json"))
    return outbox_entry(message, source=registry.source, correlation_id=correlation_id.get())


def outbox(registry: Registry) -> DocumentOutbox:
    return DocumentOutbox(registry.repository.loras, registry.bus, KEY_FIELDS)


async def deliver(registry: Registry, document: LoraDocument, entries: list[dict[str, Any]]) -> bool:
    """Publish the events just stored with `document` and mark them published; False when the bus
    failed (they stay in the outbox for the sweeper)."""
    return await outbox(registry).deliver(registry.repository.key(document), entries)


def deletions(registry: Registry) -> DeletionOutbox:
    return DeletionOutbox(registry.repository.deletions, registry.repository.loras, registry.bus)
