"""Consumes validation jobs: `running`, then either `failed` or a GPU validation job for the model's pool.

Idempotent under redelivery: the validator owns no state and its verdict depends only on
the two blobs, so a redelivered job publishes the same events again. The registry's fold
ignores a status it already has (keyed by validation_id and seq), and the worker pool's
GPU validation of one validation_id is likewise repeatable.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from services.validator import codes, metrics
from services.validator.codes import Problems
from services.validator.gc_pause import cyclic_gc_paused
from services.validator.reading import (
    LARGE_HEADERS_AT_ONCE,
    FetchedHeader,
    MissingBlob,
    header_limits,
    read_config_bytes,
    weights_header,
)
from services.validator.validate import validate_adapter
from shared.bus.base import Bus, DeadLetter, Delivery
from shared.catalogue.catalogue import Catalogue, ModelEntry
from shared.contracts.messages import (
    SEQ_RUNNING,
    SEQ_UNVERIFIED,
    SEQ_VALIDATOR_FAILED,
    RunGpuValidation,
    ValidateAdapter,
    ValidationStatusChanged,
)
from shared.logging import correlation_id, get_logger
from shared.stores.blobs import BlobStore

log = get_logger("validator")


@dataclass(frozen=True)
class Validator:
    bus: Bus
    blobs: BlobStore
    catalogue: Catalogue
    source: str
    # settings.deployed_models: which models this environment runs a worker pool for, over the catalogue's flag
    deployed_models: dict[str, bool] = field(default_factory=dict)
    # slots for large headers: each is held from reading one until its validation ends
    large_headers: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(LARGE_HEADERS_AT_ONCE))


async def validate_job(validator: Validator, job: ValidateAdapter) -> Problems:
    """Every problem of the job's adapter on the job's model (empty: statically valid)."""
    problems = Problems()
    try:
        model = validator.catalogue.get(job.model)
    except KeyError:
        problems.add(codes.MODEL_UNKNOWN, f"{job.model} is not a served model")
        return problems
    try:
        config_bytes = await read_config_bytes(validator.blobs, job.adapter.config_object_key)
        async with weights_header(validator.blobs, job.adapter.weights_object_key, header_limits(model),
                                  validator.large_headers) as fetched:
            # parsing a 20 MB header and checking 140 thousand tensors is CPU work: keep the loop free
            return await asyncio.to_thread(_validate_fetched, config_bytes, fetched, model)
    except MissingBlob as missing:
        problems.add(missing.code, str(missing))
        return problems


def _validate_fetched(config_bytes: bytes, fetched: FetchedHeader, model: ModelEntry) -> Problems:
    with cyclic_gc_paused():
        return validate_adapter(config_bytes, fetched.parse(), model)


async def handle_validate_adapter(validator: Validator, job: ValidateAdapter) -> None:
    await _publish_status(validator, job, "running", SEQ_RUNNING)
    with metrics.VALIDATION_SECONDS.time():
        problems = await validate_job(validator, job)
    metrics.VALIDATIONS.labels(model=job.model, result_code=problems.result_code or "passed").inc()
    if problems:
        log.info("validation.failed", validation_id=job.validation_id, model=job.model,
                 result_code=problems.result_code, problems=problems.total)
        await _publish_status(validator, job, "failed", SEQ_VALIDATOR_FAILED,
                              result_code=problems.result_code, result_message=problems.result_message())
        return
    if not validator.catalogue.is_deployed(job.model, validator.deployed_models):
        await _publish_status(validator, job, "unverified", SEQ_UNVERIFIED, result_code=codes.ENGINE_NOT_DEPLOYED,
                              result_message=f"the adapter passed every static check, but no worker pool serves "
                                             f"{job.model} in this environment, so it was not run")
        log.info("validation.unverified", validation_id=job.validation_id, model=job.model,
                 result_code=codes.ENGINE_NOT_DEPLOYED)
        return
    slug = validator.catalogue.get(job.model).slug
    gpu_job = RunGpuValidation(**{**job.model_dump(), "model_slug": slug})
    await validator.bus.publish(gpu_job, source=validator.source, correlation_id=correlation_id.get())
    log.info("validation.passed_static_checks", validation_id=job.validation_id, model=job.model)


async def _publish_status(validator: Validator, job: ValidateAdapter, status: str, seq: int,
                          result_code: str | None = None, result_message: str | None = None) -> None:
    event = ValidationStatusChanged(lora_id=job.adapter.lora_id, org_id=job.org_id, model=job.model,
                                    validation_id=job.validation_id, status=status, seq=seq,
                                    result_code=result_code, result_message=result_message)
    await validator.bus.publish(event, source=validator.source, correlation_id=correlation_id.get())


async def on_validate_adapter(validator: Validator, delivery: Delivery) -> None:
    try:
        job = ValidateAdapter.from_event(delivery.event)
    except (ValidationError, ValueError):
        raise DeadLetter(f"malformed {delivery.event.type} job {delivery.event.id}") from None
    await handle_validate_adapter(validator, job)


MessageHandler = Callable[[Validator, Delivery], Awaitable[None]]
ROUTES: dict[str, MessageHandler] = {ValidateAdapter.TYPE: on_validate_adapter}


def dispatcher(validator: Validator) -> Callable[[Delivery], Awaitable[None]]:
    """The queue's handler: routes each delivery by its CloudEvents type."""
    async def handle(delivery: Delivery) -> None:
        handler = ROUTES.get(delivery.event.type)
        if handler is None:
            raise DeadLetter(f"the validator has no handler for {delivery.event.type}")
        token = correlation_id.set(delivery.event.correlationid)
        try:
            await handler(validator, delivery)
        finally:
            correlation_id.reset(token)
    return handle
