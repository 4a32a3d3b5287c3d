"""GPU validation jobs: load the adapter, run one short request with it, publish the verdict.

The request runs under the validation record's response_id (its Response's events are
published, org included); the verdict is a ValidationStatusChanged at the worker's step
(seq 3). Only a verdict about the adapter itself (it cannot be loaded, its weights or its output
are not finite, its output is malformed) is `failed`. Anything else (blob store, bus, an engine
step that failed, a worker that stopped, a cancel) is no verdict: the handler raises, the job is
redelivered and redone from scratch, up to the queue's delivery limit, after which it is
dead-lettered and the registry marks the validation unverified (the LoRA stays usable).
"""
from __future__ import annotations

from services.gpu_worker.engines.torch_engine.sequence import RequestUpdate
from services.gpu_worker.errors import OUTPUT_MALFORMED, OUTPUT_NONFINITE, AdapterRejected
from services.gpu_worker.jobs.job_parsing import parse_pool_job
from services.gpu_worker.jobs.outcomes import ResponseEvents
from services.gpu_worker.metrics import VALIDATION_WINDOW, record_finished
from services.gpu_worker.worker import Worker
from shared.bus.base import Delivery
from shared.contracts.messages import (
    SEQ_GPU_DONE,
    ChatMessage,
    RunGpuValidation,
    SamplingParams,
    ValidationStatusChanged,
)
from shared.logging import get_logger

log = get_logger("gpu_worker.validation")
VALIDATION_MESSAGES = [ChatMessage(role="user", content="Hello! Please introduce yourself.")]
# the engine's error codes that judge the adapter; every other one is the platform's failure
ADAPTER_OUTPUT_CODES = frozenset({OUTPUT_NONFINITE})


class NoVerdict(Exception):
    """The validation request failed for a reason that says nothing about the adapter: redeliver the job."""


def output_problem(update: RequestUpdate) -> tuple[str, str] | None:
    """The verdict the request's final update gives on the adapter; raises NoVerdict when it gives none."""
    if update.error_code:
        if update.error_code not in ADAPTER_OUTPUT_CODES:
            raise NoVerdict(f"the validation request failed with {update.error_code}: {update.error_message}")
        return update.error_code, update.error_message or "the request failed"
    if update.finish_reason == "cancelled":
        raise NoVerdict("the validation request was cancelled before it finished")
    if update.completion_tokens < 1 or update.finish_reason not in ("stop", "length"):
        return OUTPUT_MALFORMED, f"the request ended without output (finish reason {update.finish_reason})"
    return None


async def handle_gpu_validation(worker: Worker, delivery: Delivery) -> None:
    job = parse_pool_job(worker, delivery, RunGpuValidation, "GPU validation job")
    events = ResponseEvents(worker, response_id=job.response_id, org_id=job.org_id, lora_id=job.adapter.lora_id,
                            messages=VALIDATION_MESSAGES)
    await events.started()
    try:
        weights = await worker.adapter(job.adapter)
    except AdapterRejected as exc:
        await _verdict(worker, job, events, failure=(exc.code, exc.message))
        return
    sampling = SamplingParams(max_tokens=worker.options.validation_max_tokens, temperature=0.0)
    request = await worker.request(job.response_id, VALIDATION_MESSAGES, sampling, job.adapter, weights)
    final = None
    async for update in worker.generate(job.response_id, request):
        final = update if update.finished else final
    if final is None:
        raise NoVerdict("the validation request ended without a final update")
    try:
        failure = output_problem(final)
    except NoVerdict as exc:
        log.warning("gpu_validation_no_verdict", validation_id=job.validation_id, lora_id=job.adapter.lora_id,
                    delivery_count=delivery.delivery_count, error=str(exc))
        raise  # the bus requeues it; past the delivery limit it is dead-lettered and ends unverified
    await _verdict(worker, job, events, failure=failure, final=final)


async def _verdict(worker: Worker, job: RunGpuValidation, events: ResponseEvents,
                   failure: tuple[str, str] | None, final: RequestUpdate | None = None) -> None:
    if failure is None:
        await events.finished(final)
        # counted like the usage API bills it: a request that finished with a result (not a failed verdict)
        record_finished(job.model, VALIDATION_WINDOW, final.prompt_tokens, final.completion_tokens)
    else:
        await events.failed(*failure)
    await worker.publish(ValidationStatusChanged(
        lora_id=job.adapter.lora_id, org_id=job.org_id, model=job.model, validation_id=job.validation_id,
        status="failed" if failure else "succeeded", seq=SEQ_GPU_DONE,
        result_code=failure[0] if failure else None, result_message=failure[1] if failure else None))
    log.info("gpu_validation_done", validation_id=job.validation_id, lora_id=job.adapter.lora_id,
             status="failed" if failure else "succeeded", result_code=failure[0] if failure else None)
