"""The registry's quotas: LoRAs per org, and validation records pending or running per org.

Both are counted from the org's documents (no counters to drift). A new LoRA is counted again after it was
stored and removed if concurrent creates took the org past its limit, so the limit holds under races (a race
at the edge may refuse both); validations in flight are checked before the records are added, so concurrent
creates can overshoot that limit by at most the records they add together.
"""
from __future__ import annotations

from services.registry.context import Registry
from services.registry.domain.lora import LoraDocument
from shared.quotas import QuotaExceeded, check

VALIDATIONS_HINT = "Wait for running validations to finish or ask the operator for a higher limit."


async def check_validations(registry: Registry, org_id: str, adding: int) -> None:
    if adding <= 0:
        return
    limit = (await registry.quotas.limits(org_id)).validations_in_flight
    check("validations_in_flight", await registry.repository.validations_in_flight(org_id), limit, adding,
          VALIDATIONS_HINT)


async def check_new_lora(registry: Registry, org_id: str, models: int) -> None:
    """Before storing a LoRA: room for one more and for its validation records."""
    limit = (await registry.quotas.limits(org_id)).loras
    check("loras", await registry.repository.count(org_id), limit)
    await check_validations(registry, org_id, models)


async def recheck_stored(registry: Registry, document: LoraDocument) -> None:
    """After storing it: if concurrent creates went past the limit, take this one back out."""
    limit = (await registry.quotas.limits(document.org_id)).loras
    stored = await registry.repository.count(document.org_id)
    if stored > limit:
        await registry.repository.delete(document)
        raise QuotaExceeded("loras", stored - 1, limit)
