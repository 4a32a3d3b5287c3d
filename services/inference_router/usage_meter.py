"""Recording what each finished request used: where the router learns a request finished.

Sync and streamed requests finish on their reply stream (`WorkerCall` calls `UsageMeter.finished`
with the worker's final reply); background and GPU validation requests finish through their
Response's status events, recorded from the folded document (`record_folded`), so a redelivered
event or a job that ran twice adds nothing. A failed write is logged, never the caller's error.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from services.inference_router.usage_repo import UsageRecord, UsageRepository
from shared.contracts.messages import ResponseFinished, ResponseStatusChanged
from shared.logging import get_logger

log = get_logger("inference_router.usage")
BILLED_STATUSES = frozenset({"completed", "incomplete"})


@dataclass(frozen=True)
class UsageMeter:
    """Who asked for one sync or streamed request, and for what: its record once the worker finishes it."""

    repo: UsageRepository
    org_id: str
    api_key_id: str | None
    model: str
    lora_id: str | None
    completion_window: str
    kind: str

    async def finished(self, response_id: str, finished: ResponseFinished, latency_seconds: float) -> None:
        if finished.finish_reason == "cancelled" and not finished.completion_tokens:
            return  # skipped before it ran: nothing was used
        await store(self.repo, UsageRecord(
            id=response_id, org_id=self.org_id, api_key_id=self.api_key_id, model=self.model, lora_id=self.lora_id,
            completion_window=self.completion_window, kind=self.kind, input_tokens=finished.prompt_tokens,
            output_tokens=finished.completion_tokens, latency_seconds=round(latency_seconds, 6),
            finished_at=int(time.time())))


def kind_of(path: str) -> str:
    """`/v1/chat/completions` → `chat.completions`: which API a record came through."""
    return path.removeprefix("/v1/").strip("/").replace("/", ".")


def folded_record(doc: dict) -> UsageRecord | None:
    """The record of a stored Response that finished with usage (background or validation), else None."""
    usage = doc.get("usage")
    if doc.get("status") not in BILLED_STATUSES or not usage:
        return None
    finished_at = int(doc.get("completed_at") or time.time())
    return UsageRecord(
        id=doc["id"], org_id=doc["org_id"], api_key_id=doc.get("api_key_id"), model=doc["model"],
        lora_id=doc.get("lora_id"), completion_window=doc.get("completion_window"),
        kind="responses.background" if doc.get("background") else "validation",
        input_tokens=int(usage["input_tokens"]), output_tokens=int(usage["output_tokens"]),
        latency_seconds=float(max(0, finished_at - int(doc["created_at"]))), finished_at=finished_at)


async def record_folded(repo: UsageRepository, doc: dict | None) -> None:
    """After a status event was folded (changed or not: a redelivery may follow a lost write). Raises when
    the write fails, so the event is requeued and recorded on its redelivery."""
    record = folded_record(doc) if doc else None
    if record is not None:
        await repo.record(record)


def ends_with_usage(event: ResponseStatusChanged) -> bool:
    return event.status in BILLED_STATUSES


async def store(repo: UsageRepository, record: UsageRecord) -> None:
    try:
        if not await repo.record(record):
            log.debug("usage already recorded", response_id=record.id)
    except Exception:
        log.exception("could not record usage", response_id=record.id, org_id=record.org_id)
