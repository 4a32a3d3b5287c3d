"""POST /v1/chat/completions: OpenAI Chat Completions, plain and streamed (chunks, then `data: [DONE]`)."""
from __future__ import annotations

import time

from aiohttp import web

from services.inference_router.admission import admit, build_job
from services.inference_router.context import RouterContext, new_id
from services.inference_router.dispatch import run_to_end
from services.inference_router.sse import DONE, frame, relay, stream_slot
from services.inference_router.translate import chat_request
from shared.contracts.inference import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessageOut,
    ChunkChoice,
    ChunkDelta,
    CompletionUsage,
)
from shared.contracts.messages import ResponseErrored, ResponseFinished
from shared.http.requests import json_response, org_id, read_model


def finish_reason(finished: ResponseFinished) -> str:
    return "length" if finished.finish_reason == "length" else "stop"


def usage_of(finished: ResponseFinished) -> CompletionUsage:
    return CompletionUsage(prompt_tokens=finished.prompt_tokens, completion_tokens=finished.completion_tokens,
                           total_tokens=finished.prompt_tokens + finished.completion_tokens)


def chat_completion(completion_id: str, model: str, created: int, finished: ResponseFinished) -> ChatCompletion:
    return ChatCompletion(
        id=completion_id, created=created, model=model, usage=usage_of(finished),
        choices=[ChatChoice(message=ChatMessageOut(content=finished.output_text),
                            finish_reason=finish_reason(finished))],
    )


class ChatChunkWriter:
    """Chunks as OpenAI streams them: the role first, one per delta, the finish reason, usage if asked."""

    def __init__(self, completion_id: str, model: str, created: int, include_usage: bool):
        self.completion_id, self.model, self.created = completion_id, model, created
        self.include_usage = include_usage

    def _chunk(self, choices: list[ChunkChoice], usage: CompletionUsage | None = None) -> bytes:
        chunk = ChatCompletionChunk(id=self.completion_id, created=self.created, model=self.model,
                                    choices=choices, usage=usage)
        payload = chunk.model_dump(mode="json")
        for choice in payload["choices"]:
            choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
        if not self.include_usage:
            del payload["usage"]
        return frame(payload)

    def start(self) -> list[bytes]:
        return [self._chunk([ChunkChoice(delta=ChunkDelta(role="assistant", content=""))])]

    def delta(self, text: str) -> list[bytes]:
        return [self._chunk([ChunkChoice(delta=ChunkDelta(content=text))])] if text else []

    def finish(self, finished: ResponseFinished) -> list[bytes]:
        frames = [self._chunk([ChunkChoice(delta=ChunkDelta(), finish_reason=finish_reason(finished))])]
        if self.include_usage:
            frames.append(self._chunk([], usage_of(finished)))
        return [*frames, DONE]

    def fail(self, errored: ResponseErrored) -> list[bytes]:
        # the SDK raises APIError on a data frame with a top-level "error"
        error = {"message": f"The model worker failed: {errored.message}", "type": "server_error",
                 "param": None, "code": errored.code}
        return [frame({"error": error}), DONE]


async def create_chat_completion(router: RouterContext, request: web.Request) -> web.StreamResponse:
    body = await read_model(request, ChatCompletionRequest, router.platform.settings.max_json_body_bytes)
    messages, sampling = chat_request(body)
    admitted = await admit(router.platform.catalogue, router.loras, org_id(request), body.model, body.metadata,
                           messages, "messages")
    await router.limits.admit(request, admitted, messages)
    completion_id, created = new_id("chatcmpl-"), int(time.time())
    job = build_job(admitted, response_id=completion_id, org_id=org_id(request), messages=messages,
                    sampling=sampling, deadline=router.sync_deadline(admitted), stream=bool(body.stream))
    async with stream_slot(request, body.stream), router.call(request, job, admitted) as call:
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return await relay(request, call, ChatChunkWriter(completion_id, body.model, created, include_usage))
        finished = await run_to_end(call)
    return json_response(chat_completion(completion_id, body.model, created, finished))


