"""Inference jobs: run one request and report it on its reply stream and, for background ones, as events.

Redelivery: a job with a reply stream that comes back may already have streamed to its
client, so it is never replayed into that stream (the stream gets a clean error); a
background job is run again from scratch (its events fold idempotently). Returning acks the
job, so every outcome is published before the handler returns; a worker that stops mid-request
ends the stream with an error and sends a background job back to its queue.

The job's adapter starts loading (blob -> disk -> CPU) as soon as the job arrives, while its prompt
is rendered and before it gets its place in the batch; from arrival to the end the worker counts
the job against its adapter, so the eviction policies keep adapters that have work waiting.
"""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from services.gpu_worker.engines.base import WorkerStopping
from services.gpu_worker.engines.torch_engine.sequence import RequestUpdate
from services.gpu_worker.errors import DEADLINE_EXCEEDED, INVALID_REQUEST, WORKER_LOST, AdapterRejected
from services.gpu_worker.jobs.job_parsing import parse_pool_job
from services.gpu_worker.jobs.outcomes import ReplyStream, ResponseEvents
from services.gpu_worker.metrics import record_finished
from services.gpu_worker.worker import Worker
from shared.bus.base import Delivery
from shared.contracts.messages import GenerateResponse
from shared.logging import get_logger

log = get_logger("gpu_worker.inference")
ADAPTER_UNAVAILABLE = "adapter_unavailable"


async def handle_generate(worker: Worker, delivery: Delivery) -> None:
    job = parse_pool_job(worker, delivery, GenerateResponse, "inference job")
    with worker.holding(job.adapter):
        await _handle(worker, delivery, job)


async def _handle(worker: Worker, delivery: Delivery, job: GenerateResponse) -> None:
    replies = ReplyStream(delivery, worker.source, job.response_id, stream_deltas=job.stream)
    events = ResponseEvents(worker, response_id=job.response_id, org_id=job.org_id,
                            lora_id=job.adapter.lora_id if job.adapter else None, messages=job.messages,
                            enabled=job.background)
    # a streamed request may already have shown deltas: never replay into it. A non-streamed one has sent
    # nothing yet, so its redelivery simply runs again and the caller gets its answer late, not an error
    if replies.open and job.stream and delivery.delivery_count > 1:
        await replies.errored(WORKER_LOST, "The worker running this request stopped; send the request again.")
        if not job.background:
            return
    if worker.cancels.is_cancelled(job.response_id):
        await _cancelled(job, replies, events)
        return
    if _past(job.deadline):
        await _failed(replies, events, DEADLINE_EXCEEDED, "The response's completion window passed before it ran.")
        return
    fetch = worker.prefetch(job.adapter)
    await events.started()
    await _run(worker, job, fetch, replies, events, retry_on_transient=job.background and not replies.open)


def _past(deadline: datetime | None) -> bool:
    if deadline is None:
        return False
    return (deadline if deadline.tzinfo else deadline.replace(tzinfo=UTC)) < datetime.now(UTC)


async def _run(worker: Worker, job: GenerateResponse, fetch: asyncio.Future | None, replies: ReplyStream,
               events: ResponseEvents, retry_on_transient: bool) -> None:
    try:
        prompt = await worker.prompt(job.messages)  # while the adapter loads
    except (ValueError, TypeError) as exc:
        prompt = exc
    try:
        weights = await worker.fetched(fetch)
    except AdapterRejected as exc:
        await _failed(replies, events, exc.code, f"The LoRA could not be loaded: {exc.message}")
        return
    except Exception as exc:
        if retry_on_transient:
            raise  # requeued; a background job is retried from scratch
        log.warning("adapter_unavailable", response_id=job.response_id, error=str(exc))
        await _failed(replies, events, ADAPTER_UNAVAILABLE, f"The LoRA's files could not be fetched: {exc}")
        return
    if isinstance(prompt, Exception):
        # the conversation cannot be rendered (e.g. empty): retrying would fail the same way
        await _failed(replies, events, INVALID_REQUEST, f"The request could not be rendered as a prompt: {prompt}")
        return
    request = worker.request_for(job.response_id, prompt, job.sampling, job.adapter, weights)
    final: RequestUpdate | None = None
    try:
        async with worker.share.place(job.org_id):
            async for update in worker.generate(job.response_id, request):
                await replies.delta(update.text)
                final = update if update.finished else final
    except WorkerStopping:
        if job.stream:
            await replies.errored(WORKER_LOST, "The worker stopped before the response finished; send it again.")
        if job.background or not job.stream:
            raise  # requeued: nothing reached its caller yet, so another worker runs it from scratch
        return
    if final.error_code:
        await _failed(replies, events, final.error_code, final.error_message or "The request failed.")
        return
    await replies.finished(final)
    await events.finished(final)
    record_finished(job.model, job.completion_window, final.prompt_tokens, final.completion_tokens)
    log.info("response_finished", response_id=job.response_id, finish_reason=final.finish_reason,
             completion_tokens=final.completion_tokens, lora_id=job.adapter.lora_id if job.adapter else None)


async def _cancelled(job: GenerateResponse, replies: ReplyStream, events: ResponseEvents) -> None:
    update = RequestUpdate(job.response_id, finished=True, finish_reason="cancelled")
    await replies.finished(update)
    await events.finished(update)


async def _failed(replies: ReplyStream, events: ResponseEvents, code: str, message: str) -> None:
    await replies.errored(code, message)
    await events.failed(code, message)
