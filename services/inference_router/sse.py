"""Server-Sent Events: the framing, and the relay from a worker's replies to one API's event stream.

Each API supplies an `EventWriter` (pure: replies in, frames out); `relay` waits for the
worker's first reply before sending headers, so "no worker" and an immediate worker error
are still plain HTTP errors, and everything after that ends with the API's own error event.
"""
from __future__ import annotations

import contextlib
import json
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from aiohttp import web

from services.inference_router.dispatch import WorkerCall, worker_error
from shared.contracts.messages import ResponseDelta, ResponseErrored, ResponseFinished
from shared.http.requests import org_id, request_id
from shared.logging import get_logger
from shared.ratelimit.concurrency import Concurrency

log = get_logger("inference_router.sse")
DONE = b"data: [DONE]\n\n"


def frame(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


class EventWriter(Protocol):
    def start(self) -> list[bytes]: ...

    def delta(self, text: str) -> list[bytes]: ...

    def finish(self, finished: ResponseFinished) -> list[bytes]: ...

    def fail(self, errored: ResponseErrored) -> list[bytes]: ...


def stream_slot(request: web.Request, streamed: bool | None) -> AbstractAsyncContextManager[None]:
    """For a streamed answer, one of the org's concurrent streams (shared with `GET /v1/events`): taken
    before the job is published (a refused stream costs the workers nothing) and held, renewed, until the
    handler returns, which is when its stream ended, however it ended. Nothing for an unstreamed answer."""
    return Concurrency.serving(request).stream(org_id(request)) if streamed else contextlib.nullcontext()


async def open_event_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no", "x-request-id": request_id(request),
    })
    await response.prepare(request)
    return response


async def _send(response: web.StreamResponse, frames: list[bytes]) -> None:
    if frames:
        await response.write(b"".join(frames))


async def relay(request: web.Request, call: WorkerCall, writer: EventWriter) -> web.StreamResponse:
    """Stream one job's replies as SSE; a client that goes away leaves the call unfinished (cancelled)."""
    first = await call.first()
    if isinstance(first, ResponseErrored):
        raise worker_error(first)
    response = await open_event_stream(request)
    try:
        await _send(response, writer.start())
        async for reply in call.replies():
            if isinstance(reply, ResponseDelta):
                await _send(response, writer.delta(reply.text))
            elif isinstance(reply, ResponseFinished):
                await _send(response, writer.finish(reply))
            else:
                log.warning("stream ended by a worker error", code=reply.code, response_id=reply.response_id)
                await _send(response, writer.fail(reply))
        await response.write_eof()
    except ConnectionResetError:  # the client left: leaving the unfinished call cancels its job
        log.info("client went away mid-stream", response_id=call.job.response_id)
    return response
