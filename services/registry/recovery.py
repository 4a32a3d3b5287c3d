"""Re-issuing validation jobs after the embedded platform restarts.

With the in-process bus, a `ValidateAdapter` job (or the status events it produced) lives in
memory only: a crash loses it, and its record would sit `pending` / `running` until the
sweeper's deadline ends it `unverified`. At start-up, before serving, every such record's job
is published again from the stored document. The validator and the fold are idempotent on
a record (statuses only move forward, by `seq`), so a job that had in fact finished changes
nothing but a late duplicate. RabbitMQ keeps jobs durably, so production does not do this.
"""
from __future__ import annotations

from services.registry.context import Registry
from services.registry.domain.status import IN_PROGRESS
from services.registry.publishing import publish_jobs
from shared.logging import get_logger

log = get_logger("registry.recovery")


async def reissue_validations(registry: Registry) -> int:
    """Publish the job of every record still pending or running; returns how many."""
    count = 0
    # created_before=now+: every record in progress, whatever its age (the sweeper still ends stale ones)
    async for document in registry.repository.stuck(created_before=2**62, limit=0):
        records = [record for record in document.validations if record.status in IN_PROGRESS
                   and record.model in registry.catalogue.ids()]
        if records:
            await publish_jobs(registry, document, records)
            count += len(records)
    if count:
        log.info("validation jobs re-issued after a restart", jobs=count)
    return count
