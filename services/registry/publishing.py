"""What the registry puts on the bus: one validation job per new record, and the public lora.* events.

Every `lora.*` event carries the document's `version`, so a consumer (the router's read
model) keeps the newest it has seen and ignores re-deliveries and stragglers.
"""
from __future__ import annotations

from services.registry.context import Registry
from services.registry.domain.lora import LoraDocument
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


async def publish_lora_event(registry: Registry, kind: str, document: LoraDocument) -> None:
    event = LORA_EVENTS[kind](org_id=document.org_id, lora=document.public().model_dump(mode="json"),
                              adapter=document.adapter, version=document.version)
    await registry.bus.publish(event, source=registry.source, correlation_id=correlation_id.get())


async def publish_validation_finished(registry: Registry, document: LoraDocument,
                                      record: ValidationRecord) -> None:
    event = LoraValidationFinished(org_id=document.org_id, lora=document.public().model_dump(mode="json"),
                                   adapter=document.adapter, version=document.version,
                                   validation=record.model_dump(mode="json"))
    await registry.bus.publish(event, source=registry.source, correlation_id=correlation_id.get())
