"""Stored Response documents: how one is made, how a status event folds into it, how it is shown.

Pure. Events arrive at least once and out of order: an event applies only when its `seq` is
above the document's and the document has not reached a terminal status, so replaying the
whole log gives the same document.
"""
from __future__ import annotations

import time
from typing import Any

from shared.contracts.inference import (
    OutputMessage,
    OutputText,
    ResponseErrorBody,
    ResponseObject,
    ResponseUsage,
)
from shared.contracts.messages import ChatMessage, ResponseStatusChanged

TERMINAL = frozenset({"completed", "failed", "cancelled", "incomplete"})
ACTIVE = frozenset({"queued", "in_progress"})


def message_id(response_id: str) -> str:
    """The id of a response's one output message: stable, so every reader shows the same one."""
    return "msg_" + response_id.removeprefix("resp_")


def new_document(*, response_id: str, org_id: str, model: str, messages: list[ChatMessage],
                 status: str = "queued", lora_id: str | None = None, background: bool = False,
                 instructions: str | None = None, metadata: dict[str, str] | None = None,
                 max_output_tokens: int | None = None, temperature: float | None = None,
                 top_p: float | None = None, completion_window: str | None = None,
                 deadline: float | None = None, created_at: int | None = None) -> dict[str, Any]:
    return {
        "id": response_id, "org_id": org_id, "model": model, "lora_id": lora_id, "status": status, "seq": 0,
        "input": [m.model_dump() for m in messages], "instructions": instructions,
        "metadata": dict(metadata or {}), "background": background, "completion_window": completion_window,
        "max_output_tokens": max_output_tokens, "temperature": temperature, "top_p": top_p,
        "output_text": None, "finish_reason": None, "usage": None, "error": None,
        "created_at": created_at or int(time.time()), "completed_at": None, "deadline": deadline,
    }


def document_from_event(event: ResponseStatusChanged) -> dict[str, Any]:
    """A response first seen through its events (a validation request): stored at its first step."""
    doc = new_document(response_id=event.response_id, org_id=event.org_id, model=event.model,
                       messages=event.input or [], lora_id=event.lora_id,
                       created_at=int(event.occurred_at.timestamp()))
    doc["seq"] = -1  # below every publisher's first step, so the event itself folds in next
    return doc


def _fills(doc: dict[str, Any], event: ResponseStatusChanged) -> dict[str, Any]:
    """What any event may add whatever its order: facts that never change once known."""
    fills: dict[str, Any] = {}
    if event.input and not doc.get("input"):
        fills["input"] = [m.model_dump() for m in event.input]
    if event.lora_id and not doc.get("lora_id"):
        fills["lora_id"] = event.lora_id
    return fills


def fold(doc: dict[str, Any], event: ResponseStatusChanged) -> dict[str, Any] | None:
    """The fields `event` changes in `doc`, or None when it changes nothing."""
    if event.org_id != doc["org_id"]:
        return None
    changes = _fills(doc, event)
    if doc["status"] in TERMINAL or event.seq <= doc.get("seq", 0):
        return changes or None
    changes.update(status=event.status, seq=event.seq)
    if event.output_text is not None:
        changes["output_text"] = event.output_text
    if event.finish_reason is not None:
        changes["finish_reason"] = event.finish_reason
    if event.prompt_tokens or event.completion_tokens:
        changes["usage"] = {"input_tokens": event.prompt_tokens, "output_tokens": event.completion_tokens}
    if event.error is not None:
        changes["error"] = {"code": str(event.error.get("code") or "server_error"),
                            "message": str(event.error.get("message") or "The response failed.")}
    if event.status in TERMINAL:
        changes["completed_at"] = int(event.occurred_at.timestamp())
    return changes


def finished_changes(*, output_text: str, finish_reason: str, prompt_tokens: int,
                     completion_tokens: int) -> dict[str, Any]:
    """What a finished sync or streamed response stores (the worker's final reply, folded)."""
    status = "incomplete" if finish_reason == "length" else "completed"
    return {"status": status, "output_text": output_text, "finish_reason": finish_reason,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens},
            "completed_at": int(time.time())}


def output_of(doc: dict[str, Any]) -> list[OutputMessage]:
    if doc.get("output_text") is None:
        return []
    status = "incomplete" if doc["status"] == "incomplete" else "completed"
    return [OutputMessage(id=message_id(doc["id"]), status=status,
                          content=[OutputText(text=doc["output_text"])])]


def render(doc: dict[str, Any]) -> ResponseObject:
    usage = doc.get("usage")
    incomplete = {"reason": "max_output_tokens"} if doc["status"] == "incomplete" else None
    return ResponseObject(
        id=doc["id"], created_at=doc["created_at"], status=doc["status"], background=bool(doc.get("background")),
        completed_at=doc.get("completed_at") if doc["status"] == "completed" else None,
        error=ResponseErrorBody(**doc["error"]) if doc.get("error") else None,
        incomplete_details=incomplete, instructions=doc.get("instructions"),
        max_output_tokens=doc.get("max_output_tokens"), metadata=doc.get("metadata") or {}, model=doc["model"],
        output=output_of(doc), temperature=doc.get("temperature"), top_p=doc.get("top_p"),
        usage=ResponseUsage(input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"],
                            total_tokens=usage["input_tokens"] + usage["output_tokens"]) if usage else None,
    )
