"""Ends validation records stuck in pending/running past the deadline as `unverified`, and
publishes the events a crash or a bus outage left in the outboxes (at start-up, then every round).

A record can be stuck when no worker pool serves its model (Kimi-K2.6 today) or when a job
was lost. Every registry instance may sweep: the fold's compare-and-set makes it idempotent,
and an event published twice keeps its CloudEvents id.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from functools import partial

from services.registry.context import Registry
from services.registry.domain.status import IN_PROGRESS
from services.registry.operations import mark_unverified
from services.registry.publishing import deletions, outbox
from shared.bus.outbox import keep_flushing
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


async def flush_outboxes(registry: Registry, older_than: float) -> int:
    """Publish the events stored before `older_than` and not yet marked published; returns how many."""
    return await outbox(registry).flush(older_than) + await deletions(registry).flush(older_than)


def sweeper_ctx(registry: Registry):
    async def ctx(app):
        interval = interval_for(registry.validation_deadline_seconds)
        tasks = [asyncio.create_task(_loop(registry, interval)),
                 asyncio.create_task(keep_flushing(partial(flush_outboxes, registry), interval, "registry"))]
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
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
