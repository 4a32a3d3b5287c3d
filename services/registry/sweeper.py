"""Ends validation records stuck in pending/running past the deadline as `unverified`.

A record can be stuck when no worker pool serves its model (Kimi-K2.6 today) or when a job
was lost. Every registry instance may sweep: the fold's compare-and-set makes it idempotent.
"""
from __future__ import annotations

import asyncio
import time

from services.registry.context import Registry
from services.registry.domain.status import IN_PROGRESS
from services.registry.operations import mark_unverified
from shared.logging import get_logger

log = get_logger("registry.sweeper")
TIMEOUT_CODE = "validation_timeout"
MAX_INTERVAL_SECONDS = 60.0


def interval_for(deadline_seconds: int) -> float:
    return min(MAX_INTERVAL_SECONDS, max(1.0, deadline_seconds / 10))


async def sweep_once(registry: Registry, now: float | None = None) -> int:
    """Mark every record still in progress that was created more than the deadline before `now`;
    returns how many."""
    deadline = registry.validation_deadline_seconds
    cutoff = int(now if now is not None else time.time()) - deadline
    stuck = [document async for document in registry.repository.stuck(cutoff)]
    marked = 0
    for document in stuck:
        for record in document.validations:
            if record.status not in IN_PROGRESS or record.created_at > cutoff:
                continue
            marked += await mark_unverified(
                registry, org_id=document.org_id, lora_id=document.id, validation_id=record.id,
                model=record.model, code=TIMEOUT_CODE,
                message=f"Validation on {record.model} did not finish within {deadline} seconds "
                        f"(it was {record.status}); the LoRA stays usable for this model.")
    return marked


def sweeper_ctx(registry: Registry):
    async def ctx(app):
        task = asyncio.create_task(_loop(registry, interval_for(registry.validation_deadline_seconds)))
        yield
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    return ctx


async def _loop(registry: Registry, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            marked = await sweep_once(registry)
            if marked:
                log.info("swept stuck validations", marked=marked)
        except Exception:
            log.exception("sweep failed; trying again next round")
