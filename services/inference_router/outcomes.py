"""The public outcome of a background Response: `response.completed|failed|cancelled|incomplete`.

Whatever ends a background Response (the worker's status event folded, its deadline passing, its
job dead-lettered, a cancel, a restart of the embedded platform) ends it with one conditional update
(response_repo.py), and that same update puts the outcome event into the document's outbox
(shared/bus/outbox.py): a Response ends once, so it is announced once, with exactly the stored
Response (as GET /v1/responses/{id} renders it). It is published right after and pulled once
published; what a crash or a bus outage left is published by `keep_publishing` at start-up and every
round after, with the same CloudEvents id.
"""
from __future__ import annotations

from typing import Any

from services.inference_router.response_docs import render
from shared.bus.base import Bus
from shared.bus.outbox import DocumentOutbox, keep_flushing, outbox_entry
from shared.contracts.messages import RESPONSE_OUTCOMES
from shared.logging import correlation_id

SWEEP_INTERVAL_SECONDS = 30.0


def outcome_entry(doc: dict[str, Any], source: str) -> dict[str, Any] | None:
    """The outbox entry announcing `doc`'s end, or None unless it is a background Response that ended."""
    outcome = RESPONSE_OUTCOMES.get(doc["status"])
    if outcome is None or not doc.get("background"):
        return None
    message = outcome(org_id=doc["org_id"], response=render(doc).model_dump(mode="json"))
    return outbox_entry(message, source=source, correlation_id=correlation_id.get())


def outcomes_outbox(responses_collection, bus: Bus) -> DocumentOutbox:
    return DocumentOutbox(responses_collection, bus, ("id",))


async def keep_publishing(outbox: DocumentOutbox | None, interval: float = SWEEP_INTERVAL_SECONDS) -> None:
    """Publish the outcomes left in outboxes: all of them at start-up, then every `interval`."""
    if outbox is not None:
        await keep_flushing(outbox.flush, interval, "response outcomes")
