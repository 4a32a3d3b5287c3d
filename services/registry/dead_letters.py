"""Validation jobs that were dead-lettered (delivery limit reached, or refused) end `unverified`."""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from services.registry.context import Registry
from services.registry.operations import mark_unverified
from shared.bus.base import Delivery
from shared.contracts import topology as t
from shared.contracts.messages import MESSAGE_TYPES, ResponseStatusChanged, RunGpuValidation, ValidateAdapter
from shared.logging import correlation_id, get_logger

log = get_logger("registry.dead_letters")
DEAD_LETTERED_CODE = "validation_dead_lettered"
VALIDATION_JOBS = (ValidateAdapter, RunGpuValidation)
RESPONSE_SEQ_TERMINAL = 2  # the worker numbers a Response's steps in_progress = 1, terminal = 2


def dead_letter_queues(slugs: list[str]) -> list[str]:
    """The DLQs of the validator's queue and of every model's GPU validation queue."""
    topology = t.topology(slugs)
    sources = [t.VALIDATION_QUEUE, *(t.gpu_validation_queue(slug) for slug in slugs)]
    return [topology.queue(name).dlq_name for name in sources]


def death_of(delivery: Delivery) -> tuple[str, str | None]:
    """(reason, queue) of the message's death: the bus's record, else the AMQP `x-death` header."""
    if delivery.death is not None:
        return delivery.death.reason or "unknown", delivery.death.queue or None
    return death_from_headers(delivery.headers)


def death_from_headers(headers: dict[str, Any]) -> tuple[str, str | None]:
    deaths = headers.get("x-death") if isinstance(headers, dict) else None
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        latest = deaths[0]
        reason, queue = latest.get("reason"), latest.get("queue")
        return (str(reason) if reason else "unknown"), (str(queue) if queue else None)
    return "unknown", None


def explain(job: ValidateAdapter, reason: str, queue: str | None) -> str:
    where = "GPU validation" if isinstance(job, RunGpuValidation) else "static validation"
    source = f" from {queue}" if queue else ""
    return (f"The {where} job on {job.model} was dead-lettered{source} (reason: {reason}) "
            "and could not be completed automatically; the LoRA stays usable for this model.")


async def on_dead_letter(registry: Registry, delivery: Delivery) -> None:
    job_type = MESSAGE_TYPES.get(delivery.event.type)
    if job_type not in VALIDATION_JOBS:
        log.warning("ignoring a dead letter that is no validation job", type=delivery.event.type)
        return
    try:
        job = job_type.from_event(delivery.event)
    except (ValidationError, ValueError):
        log.warning("ignoring a malformed dead-lettered job", event_id=delivery.event.id)
        return
    reason, queue = death_of(delivery)
    if delivery.death is not None and delivery.death.error:
        log.info("dead-lettered validation job", validation_id=job.validation_id, reason=reason,
                 last_error=delivery.death.error)
    message = explain(job, reason, queue)
    ended = await mark_unverified(registry, org_id=job.org_id, lora_id=job.adapter.lora_id,
                                  validation_id=job.validation_id, model=job.model, code=DEAD_LETTERED_CODE,
                                  message=message)
    if ended and isinstance(job, RunGpuValidation):
        await fail_validation_response(registry, job, message)


async def fail_validation_response(registry: Registry, job: RunGpuValidation, message: str) -> None:
    """A worker that took the job started the validation's Response before it died with it; nobody
    will finish that Response now, so end it failed (the router folds it; a terminal one never changes)."""
    event = ResponseStatusChanged(response_id=job.response_id, org_id=job.org_id, model=job.model,
                                  status="failed", seq=RESPONSE_SEQ_TERMINAL, lora_id=job.adapter.lora_id,
                                  error={"code": DEAD_LETTERED_CODE, "message": message})
    await registry.bus.publish(event, source=registry.source, correlation_id=correlation_id.get())
