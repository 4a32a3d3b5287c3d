"""Where a job's progress goes: its reply stream (sync and streamed requests) and its Response's
status events (background and validation requests). The worker numbers its Response steps:
in_progress = 1, then one terminal status = 2.
"""
from __future__ import annotations

from services.gpu_worker.engines.torch_engine.sequence import RequestUpdate
from services.gpu_worker.worker import Worker
from shared.bus.base import Delivery
from shared.contracts.messages import (
    ChatMessage,
    ResponseDelta,
    ResponseErrored,
    ResponseFinished,
    ResponseStatusChanged,
)

SEQ_IN_PROGRESS, SEQ_TERMINAL = 1, 2


def terminal_status(update: RequestUpdate) -> str:
    if update.error_code:
        return "failed"
    return {"cancelled": "cancelled", "length": "incomplete"}.get(update.finish_reason or "", "completed")


class ReplyStream:
    """The job's reply stream; silent when the job has none (background) or it was closed."""

    def __init__(self, delivery: Delivery, source: str, response_id: str, stream_deltas: bool):
        self.delivery, self.source, self.response_id = delivery, source, response_id
        self.open = delivery.reply_to is not None
        self.stream_deltas = stream_deltas
        self._index = 0

    async def delta(self, text: str) -> None:
        if self.open and self.stream_deltas and text:
            await self.delivery.reply(ResponseDelta(response_id=self.response_id, index=self._index, text=text),
                                      source=self.source)
            self._index += 1

    async def finished(self, update: RequestUpdate) -> None:
        if self.open:
            await self.delivery.reply(ResponseFinished(
                response_id=self.response_id, output_text=update.output_text,
                finish_reason=update.finish_reason or "stop", prompt_tokens=update.prompt_tokens,
                completion_tokens=update.completion_tokens), source=self.source)
            self.open = False

    async def errored(self, code: str, message: str) -> None:
        if self.open:
            await self.delivery.reply(ResponseErrored(response_id=self.response_id, code=code, message=message),
                                      source=self.source)
            self.open = False


class ResponseEvents:
    """Status events of one stored Response (org included, so the router folds them into the right org)."""

    def __init__(self, worker: Worker, *, response_id: str, org_id: str, lora_id: str | None,
                 messages: list[ChatMessage], enabled: bool = True):
        self.worker, self.enabled = worker, enabled
        self._fields = {"response_id": response_id, "org_id": org_id, "model": worker.entry.id, "lora_id": lora_id}
        self._messages = messages

    async def started(self) -> None:
        if self.enabled:
            await self.worker.publish(ResponseStatusChanged(**self._fields, status="in_progress",
                                                            seq=SEQ_IN_PROGRESS, input=self._messages))

    async def finished(self, update: RequestUpdate) -> None:
        if self.enabled:
            await self.worker.publish(ResponseStatusChanged(
                **self._fields, status=terminal_status(update), seq=SEQ_TERMINAL, input=self._messages,
                output_text=update.output_text, finish_reason=update.finish_reason,
                prompt_tokens=update.prompt_tokens, completion_tokens=update.completion_tokens))

    async def failed(self, code: str, message: str) -> None:
        if self.enabled:
            await self.worker.publish(ResponseStatusChanged(**self._fields, status="failed", seq=SEQ_TERMINAL,
                                                            input=self._messages,
                                                            error={"code": code, "message": message}))
