"""Validating again the records made under other engine capabilities than the catalogue's today.

Runs once at every start-up, in the background: a new release whose engine applies more or less
of an adapter (or a model moved to another engine) re-checks every LoRA of that model, so an
adapter is never served by an engine it was not validated for. Each change is a compare-and-set
on the document's version, so several replicas starting at once append each record once.
"""
from __future__ import annotations

import asyncio
import contextlib
import time

from services.registry.context import Registry
from services.registry.domain.engines import outdated_models, revalidated
from services.registry.domain.lora import LoraDocument
from services.registry.operations import CAS_ATTEMPTS
from services.registry.publishing import deliver, lora_event, publish_jobs
from shared.logging import get_logger

log = get_logger("registry.revalidation")
PAGE = 200


async def revalidate_outdated(registry: Registry) -> int:
    """Append a pending record (and publish its job) for every outdated model; returns how many."""
    fingerprints = registry.catalogue.engine_fingerprints()
    count, after = 0, None
    while True:
        page = await registry.repository.page(None, after=after, limit=PAGE, descending=False)
        for document in page:
            count += await _revalidate(registry, document, fingerprints)
        if len(page) < PAGE:
            break
        after = (page[-1].created_ns, page[-1].id)
    if count:
        log.info("validations re-issued for changed engine capabilities", records=count)
    return count


async def _revalidate(registry: Registry, document: LoraDocument, fingerprints: dict[str, str]) -> int:
    for _ in range(CAS_ATTEMPTS):
        models = outdated_models(document, fingerprints)
        if not models:
            return 0
        after = revalidated(document, models, fingerprints, int(time.time()))
        events = [lora_event(registry, "updated", after)]
        if await registry.repository.replace(document, after, events):
            await deliver(registry, after, events)
            known = {r.id for r in document.validations}
            await publish_jobs(registry, after, [r for r in after.validations if r.id not in known])
            return len(models)
        document = await registry.repository.get(document.org_id, lora_id=document.id)
        if document is None:
            return 0
    return 0


def revalidation_ctx(registry: Registry):
    async def ctx(app):
        task = asyncio.create_task(_run(registry))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


async def _run(registry: Registry) -> None:
    try:
        await revalidate_outdated(registry)
    except asyncio.CancelledError:
        raise
    except Exception:  # the bus or store is down at start-up: the next start tries again
        log.exception("revalidation at start-up failed")
