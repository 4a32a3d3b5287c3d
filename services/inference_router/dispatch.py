"""One job on the bus and the worker's replies to it.

`WorkerCall` publishes a GenerateResponse with a reply stream and relays what the worker
sends back. No first reply within the sync timeout is a 503 (the job waits in its queue
for a worker that never came, so it is cancelled); silence after the first reply means the
worker died, which ends the relay with a synthetic `ResponseErrored` so every API can close
its stream cleanly. Leaving the call before it finished (the client went away) cancels the job.
An `admission` (the fair scheduler's turn) is entered before publishing and left after the call.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Self

from services.inference_router.metrics import FIRST_REPLY_SECONDS, OUTCOMES
from services.inference_router.usage_meter import UsageMeter
from shared.bus.base import Bus, BusError, ReplyStream
from shared.contracts import topology
from shared.contracts.cloudevents import CloudEvent
from shared.contracts.errors import ApiError, BadRequest, InternalError, ServiceUnavailable
from shared.contracts.messages import (
    CancelResponse,
    GenerateResponse,
    ResponseDelta,
    ResponseErrored,
    ResponseFinished,
)
from shared.logging import get_logger

log = get_logger("inference_router.dispatch")
Reply = ResponseDelta | ResponseFinished | ResponseErrored
REPLY_TYPES: dict[str, type[Reply]] = {m.TYPE: m for m in (ResponseDelta, ResponseFinished, ResponseErrored)}
# the worker's result codes (services/gpu_worker/errors.py) that the caller caused or can retry
CALLER_ERROR_CODES = {"invalid_request", "context_length_exceeded", "load_failed", "weights_nonfinite",
                      "rank_too_large"}
RETRYABLE_CODES = {"deadline_exceeded", "stream_interrupted", "worker_lost"}


def parse_reply(event: CloudEvent) -> Reply | None:
    kind = REPLY_TYPES.get(event.type)
    return kind.from_event(event) if kind else None


def worker_error(errored: ResponseErrored) -> ApiError:
    """A worker's refusal as the HTTP error of a request whose response has not started."""
    if errored.code in CALLER_ERROR_CODES:
        return BadRequest(errored.message, code=errored.code)
    if errored.code in RETRYABLE_CODES:
        return ServiceUnavailable(errored.message, code=errored.code)
    # the same request would fail the same way: tell the SDKs not to retry it
    return InternalError(f"The model worker failed: {errored.message}", code=errored.code,
                         headers={"x-should-retry": "false"})


def no_worker_error(model: str, waited: float) -> ServiceUnavailable:
    return ServiceUnavailable(f"No worker for '{model}' answered within {waited:g} seconds. The pool may be "
                              "scaling up from zero: retry later, or send the request with background=true.",
                              code="no_worker_available")


class WorkerCall:
    def __init__(self, bus: Bus, job: GenerateResponse, *, source: str, correlation_id: str | None,
                 priority: int, first_timeout: float, idle_timeout: float, meter: UsageMeter | None = None,
                 admission: AbstractAsyncContextManager | None = None):
        self.bus = bus
        self.priority = priority
        self.job = job
        self.source = source
        self.correlation_id = correlation_id
        self.first_timeout = first_timeout
        self.idle_timeout = idle_timeout
        self.meter = meter
        self.admission = admission
        self._held = contextlib.AsyncExitStack()
        self.finished = False
        self._stream: ReplyStream | None = None
        self._first: Reply | None = None
        self._published_at = 0.0

    async def __aenter__(self) -> Self:
        if self.admission is not None:
            await self._held.enter_async_context(self.admission)
        self._published_at = asyncio.get_running_loop().time()
        try:
            self._stream = await self.bus.request(self.job, source=self.source, correlation_id=self.correlation_id,
                                                  priority=self.priority)
        except BusError as exc:
            await self._held.aclose()
            raise ServiceUnavailable(f"The job queue is unavailable: {exc}. Retry later.",
                                     code="queue_unavailable") from None
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        try:
            if not self.finished:
                await self.cancel()
            if self._stream is not None:
                await self._stream.close()
        finally:
            await self._held.aclose()

    async def _next(self, timeout: float) -> Reply | None:
        """The next reply we understand; None when none came within `timeout` seconds."""
        if self._stream is None:
            raise RuntimeError("WorkerCall used outside `async with`")
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout
        while True:
            try:
                event = await self._stream.next(timeout=max(0.0, until - loop.time()))
            except (TimeoutError, BusError):
                return None  # silence, or the reply stream ended with the bus connection
            reply = parse_reply(event)
            if reply is not None:
                if not isinstance(reply, ResponseDelta):
                    self.finished = True
                    OUTCOMES.labels(self.job.model, "finished" if isinstance(reply, ResponseFinished)
                                    else reply.code).inc()
                    if isinstance(reply, ResponseFinished) and self.meter is not None:
                        await self.meter.finished(self.job.response_id, reply, loop.time() - self._published_at)
                return reply
            log.warning("ignored an unknown reply", type=event.type, response_id=self.job.response_id)

    async def first(self) -> Reply:
        """Wait for the worker's first reply: before it, nothing has been sent to the client."""
        if self._first is None:
            reply = await self._next(self.first_timeout)
            if reply is None:
                OUTCOMES.labels(self.job.model, "no_worker").inc()
                raise no_worker_error(self.job.model, self.first_timeout)
            FIRST_REPLY_SECONDS.labels(self.job.model).observe(asyncio.get_running_loop().time() - self._published_at)
            self._first = reply
        return self._first

    async def replies(self) -> AsyncIterator[Reply]:
        """Every reply up to the final one; a worker gone silent ends it with `worker_lost`."""
        reply: Reply | None = await self.first()
        while reply is not None:
            yield reply
            if not isinstance(reply, ResponseDelta):
                return
            reply = await self._next(self.idle_timeout)
        self.finished = True
        OUTCOMES.labels(self.job.model, "worker_lost").inc()
        await self.cancel()
        yield ResponseErrored(response_id=self.job.response_id, code="worker_lost",
                              message=f"The model worker stopped answering for {self.idle_timeout:g} seconds.")

    async def cancel(self) -> None:
        await publish_cancel(self.bus, self.source, response_id=self.job.response_id, org_id=self.job.org_id,
                             model_slug=self.job.model_slug, correlation_id=self.correlation_id)
        self.finished = True


async def publish_cancel(bus: Bus, source: str, *, response_id: str, org_id: str, model_slug: str,
                         correlation_id: str | None = None) -> None:
    """Tell the model's workers to stop (or skip) a response; best effort, the fold ignores late results."""
    message = CancelResponse(response_id=response_id, org_id=org_id, model_slug=model_slug)
    try:
        await bus.publish(message, source=source, correlation_id=correlation_id,
                          exchange=topology.cancels_exchange(model_slug))
    except BusError as exc:
        log.warning("could not publish a cancel", response_id=response_id, error=str(exc))


async def run_to_end(call: WorkerCall) -> ResponseFinished:
    """A non-streaming request: the worker's final reply, or its error as an HTTP error."""
    async for reply in call.replies():
        if isinstance(reply, ResponseFinished):
            return reply
        if isinstance(reply, ResponseErrored):
            raise worker_error(reply)
    raise InternalError("The model worker ended without a result.", code="worker_lost")
