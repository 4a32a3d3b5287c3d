"""OpenAI Responses: POST /v1/responses (sync, streamed, background), GET /v1/responses/{id}, POST …/cancel.

Background responses are stored `queued` with their job held in them, published when their org's turn
comes (fairness/background.py), and then follow the
worker's status events (folded by `response_events`); sync and streamed ones are stored once
they end (unless `store: false`). Validation requests' responses are stored by the fold too.
"""
from __future__ import annotations

from aiohttp import web

from services.inference_router.admission import Admitted, admit, build_job
from services.inference_router.context import RouterContext, new_id
from services.inference_router.dispatch import run_to_end
from services.inference_router.rate_limits import RATE_GRANT
from services.inference_router.response_docs import ACTIVE, finished_changes, new_document, render
from services.inference_router.responses_stream import ResponsesEventWriter
from services.inference_router.sse import relay, stream_slot
from services.inference_router.translate import responses_request
from shared.contracts.errors import BadRequest, NotFound
from shared.contracts.inference import ResponseCreateRequest
from shared.contracts.messages import ResponseFinished
from shared.http.requests import api_key_id, json_response, org_id, read_model, request_id
from shared.logging import get_logger

log = get_logger("inference_router.responses")


def _document(body: ResponseCreateRequest, admitted: Admitted, response_id: str, org: str, messages,
              status: str, deadline: float | None) -> dict:
    return new_document(
        response_id=response_id, org_id=org, model=admitted.model.id, messages=messages, status=status,
        lora_id=admitted.lora.id if admitted.lora else None, background=bool(body.background),
        instructions=body.instructions, metadata=admitted.metadata, max_output_tokens=body.max_output_tokens,
        temperature=body.temperature, top_p=body.top_p, completion_window=admitted.window, deadline=deadline)


def _ended(doc: dict, finished: ResponseFinished) -> dict:
    return {**doc, **finished_changes(output_text=finished.output_text, finish_reason=finished.finish_reason,
                                      prompt_tokens=finished.prompt_tokens,
                                      completion_tokens=finished.completion_tokens)}


async def _store(router: RouterContext, doc: dict) -> None:
    try:
        await router.responses.insert(doc)
    except Exception:  # the caller already has the answer; a lost copy must not turn it into an error
        log.exception("could not store a response", response_id=doc["id"])


async def create_response(router: RouterContext, request: web.Request) -> web.StreamResponse:
    body = await read_model(request, ResponseCreateRequest, router.platform.settings.max_json_body_bytes)
    messages, sampling = responses_request(body)
    org = org_id(request)
    admitted = await admit(router.platform.catalogue, router.loras, org, body.model, body.metadata, messages, "input")
    await router.limits.admit(request, admitted, messages)
    response_id = new_id("resp_")
    if body.background:
        return await _start_background(request, router, body, admitted, response_id, messages, sampling)
    job = build_job(admitted, response_id=response_id, org_id=org, messages=messages, sampling=sampling,
                    deadline=router.sync_deadline(admitted), stream=bool(body.stream))
    doc = _document(body, admitted, response_id, org, messages, "in_progress", None)
    async with stream_slot(request, body.stream), router.call(request, job, admitted) as call:
        if body.stream:
            writer = ResponsesEventWriter(render(doc))
            streamed = await relay(request, call, writer)
            if writer.finished and body.store is not False:
                await _store(router, _ended(doc, writer.finished))
            return streamed
        doc = _ended(doc, await run_to_end(call))
    if body.store is not False:
        await _store(router, doc)
    return json_response(render(doc))


async def _start_background(request, router: RouterContext, body, admitted, response_id, messages, sampling):
    """Store the Response `queued` with its job held in it and answer; the job waits for its org's turn
    (fairness/background.py) and is published then."""
    deadline = router.background_deadline(admitted)
    org = org_id(request)
    router.fair.check_room(admitted.model, org)
    doc = _document(body, admitted, response_id, org, messages, "queued", deadline)
    doc["api_key_id"] = api_key_id(request)  # for its usage record, written when its status events end it
    grant = request.get(RATE_GRANT)
    if grant is not None:  # its token counters are settled when its end is folded (response_events.py)
        doc["rate_grant"] = {"token_keys": list(grant.token_keys), "estimated_tokens": grant.estimated_tokens}
    job = build_job(admitted, response_id=response_id, org_id=org, messages=messages, sampling=sampling,
                    deadline=deadline, background=True)
    held = router.background.hold(doc, job, cost=router.cost_of(admitted, job), priority=admitted.priority,
                                  correlation_id=request_id(request))
    await router.responses.insert(held)
    router.background.start(held)
    return json_response(render(doc))


async def _owned(router: RouterContext, request: web.Request) -> dict:
    response_id = request.match_info["response_id"]
    doc = await router.responses.get(org_id(request), response_id)
    if doc is None:
        raise NotFound(f"No response with id '{response_id}' was found.", param="response_id",
                       code="response_not_found")
    return doc


async def get_response(router: RouterContext, request: web.Request) -> web.Response:
    return json_response(render(await _owned(router, request)))


async def cancel_response(router: RouterContext, request: web.Request) -> web.Response:
    doc = await _owned(router, request)
    if not doc.get("background"):
        raise BadRequest("Only responses created with background=true can be cancelled.",
                         param="response_id", code="not_cancellable")
    if doc["status"] in ACTIVE:
        cancelled = await router.responses.cancel(doc["org_id"], doc["id"])
        if cancelled is not None:
            router.background.forget(doc["id"])
            await router.cancel_stored(cancelled, request_id(request))
            return json_response(render(cancelled))
        doc = await _owned(router, request)
    if doc["status"] != "cancelled":
        raise BadRequest(f"Cannot cancel a response whose status is '{doc['status']}'.",
                         param="response_id", code="not_cancellable")
    return json_response(render(doc))
