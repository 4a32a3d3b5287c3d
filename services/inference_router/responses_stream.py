"""The Responses API event sequence, as `responses.stream()` expects it.

response.created, response.in_progress, response.output_item.added, response.content_part.added,
response.output_text.delta…, response.output_text.done, response.content_part.done,
response.output_item.done, then response.completed (response.incomplete when max_output_tokens
cut it short; response.failed when the worker failed). Every event carries `sequence_number`;
there is no `[DONE]`.
"""
from __future__ import annotations

import time
from typing import Any

from services.inference_router.response_docs import message_id
from services.inference_router.sse import frame
from shared.contracts.inference import (
    OutputMessage,
    OutputText,
    ResponseErrorBody,
    ResponseObject,
    ResponseUsage,
)
from shared.contracts.messages import ResponseErrored, ResponseFinished


class ResponsesEventWriter:
    def __init__(self, response: ResponseObject):
        self.response = response.model_copy(update={"status": "in_progress"})
        self.item_id = message_id(response.id)
        self.text = ""
        self.sequence_number = 0
        self.finished: ResponseFinished | None = None
        self.errored: ResponseErrored | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence_number, **fields}
        self.sequence_number += 1
        return frame(payload, event=kind)

    def _response(self) -> dict[str, Any]:
        return self.response.model_dump(mode="json")

    def _text_part(self) -> dict[str, Any]:
        return OutputText(text=self.text).model_dump(mode="json")

    def _item(self, status: str) -> OutputMessage:
        content = [OutputText(text=self.text)] if status != "in_progress" else []
        return OutputMessage(id=self.item_id, status=status, content=content)

    def _where(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "output_index": 0, "content_index": 0}

    def start(self) -> list[bytes]:
        return [
            self._event("response.created", response=self._response()),
            self._event("response.in_progress", response=self._response()),
            self._event("response.output_item.added", output_index=0,
                        item=self._item("in_progress").model_dump(mode="json")),
            self._event("response.content_part.added", **self._where(), part=self._text_part()),
        ]

    def delta(self, text: str) -> list[bytes]:
        if not text:
            return []
        self.text += text
        return [self._event("response.output_text.delta", **self._where(), delta=text, logprobs=[])]

    def finish(self, finished: ResponseFinished) -> list[bytes]:
        self.finished = finished
        self.text = finished.output_text
        incomplete = finished.finish_reason == "length"
        item = self._item("incomplete" if incomplete else "completed")
        self.response = self.response.model_copy(update={
            "status": "incomplete" if incomplete else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "completed_at": None if incomplete else int(time.time()),
            "output": [item],
            "usage": ResponseUsage(input_tokens=finished.prompt_tokens, output_tokens=finished.completion_tokens,
                                   total_tokens=finished.prompt_tokens + finished.completion_tokens),
        })
        return [
            self._event("response.output_text.done", **self._where(), text=self.text, logprobs=[]),
            self._event("response.content_part.done", **self._where(), part=self._text_part()),
            self._event("response.output_item.done", output_index=0, item=item.model_dump(mode="json")),
            self._event("response.incomplete" if incomplete else "response.completed", response=self._response()),
        ]

    def fail(self, errored: ResponseErrored) -> list[bytes]:
        self.errored = errored
        self.response = self.response.model_copy(update={
            "status": "failed", "output": [],
            "error": ResponseErrorBody(code=errored.code, message=f"The model worker failed: {errored.message}"),
        })
        return [self._event("response.failed", response=self._response())]
