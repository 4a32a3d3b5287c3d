"""POST /v1/messages: Anthropic Messages, plain and streamed (`event:` named SSE, message_start … message_stop).

Errors before the stream starts are rendered in Anthropic's envelope by the kit's error
middleware (it does so for every /v1/messages path); after it started, as `event: error`.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from services.inference_router.admission import admit, build_job
from services.inference_router.context import RouterContext, new_id
from services.inference_router.dispatch import run_to_end
from services.inference_router.sse import frame, relay, stream_slot
from services.inference_router.translate import messages_request
from shared.contracts.inference import AnthropicMessage, AnthropicTextBlock, AnthropicUsage, MessagesRequest
from shared.contracts.messages import ResponseErrored, ResponseFinished
from shared.http.requests import json_response, org_id, read_model


def stop_reason(finished: ResponseFinished) -> str:
    return "max_tokens" if finished.finish_reason == "length" else "end_turn"


def anthropic_message(message_id: str, model: str, finished: ResponseFinished) -> AnthropicMessage:
    return AnthropicMessage(
        id=message_id, model=model, content=[AnthropicTextBlock(text=finished.output_text)],
        stop_reason=stop_reason(finished),
        usage=AnthropicUsage(input_tokens=finished.prompt_tokens, output_tokens=finished.completion_tokens),
    )


class AnthropicEventWriter:
    def __init__(self, message_id: str, model: str):
        self.message_id, self.model = message_id, model

    @staticmethod
    def _event(kind: str, **fields: Any) -> bytes:
        return frame({"type": kind, **fields}, event=kind)

    def start(self) -> list[bytes]:
        message = AnthropicMessage(id=self.message_id, model=self.model, content=[],
                                   usage=AnthropicUsage(input_tokens=0, output_tokens=0))
        return [
            self._event("message_start", message=message.model_dump(mode="json")),
            self._event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
            self._event("ping"),
        ]

    def delta(self, text: str) -> list[bytes]:
        if not text:
            return []
        return [self._event("content_block_delta", index=0, delta={"type": "text_delta", "text": text})]

    def finish(self, finished: ResponseFinished) -> list[bytes]:
        return [
            self._event("content_block_stop", index=0),
            self._event("message_delta", delta={"stop_reason": stop_reason(finished), "stop_sequence": None},
                        usage={"input_tokens": finished.prompt_tokens, "output_tokens": finished.completion_tokens}),
            self._event("message_stop"),
        ]

    def fail(self, errored: ResponseErrored) -> list[bytes]:
        return [self._event("error", error={"type": "api_error",
                                            "message": f"The model worker failed: {errored.message}"})]


async def create_message(router: RouterContext, request: web.Request) -> web.StreamResponse:
    body = await read_model(request, MessagesRequest, router.platform.settings.max_json_body_bytes)
    messages, sampling = messages_request(body)
    admitted = await admit(router.platform.catalogue, router.loras, org_id(request), body.model, body.metadata,
                           messages, "messages")
    await router.limits.admit(request, admitted, messages)
    message_id = new_id("msg_")
    job = build_job(admitted, response_id=message_id, org_id=org_id(request), messages=messages,
                    sampling=sampling, deadline=router.sync_deadline(admitted), stream=bool(body.stream))
    async with stream_slot(request, body.stream), router.call(request, job, admitted) as call:
        if body.stream:
            return await relay(request, call, AnthropicEventWriter(message_id, body.model))
        finished = await run_to_end(call)
    return json_response(anthropic_message(message_id, body.model, finished))


