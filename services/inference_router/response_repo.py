"""Response documents in the router's own database (`inference_router.responses`).

Every read is scoped by org. Folding is a compare-and-set on `seq`, so concurrent
consumers and redelivered events never lose an update or apply one twice. Every update that
ends a background Response also stores its public outcome event in the document's outbox
(outcomes.py), published right after when the repository has a bus.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pymongo.errors import DuplicateKeyError

from services.inference_router.outcomes import outcome_entry, outcomes_outbox
from services.inference_router.response_docs import ACTIVE, document_from_event, fold
from shared.bus.base import Bus
from shared.bus.outbox import FIELD as OUTBOX
from shared.contracts.messages import ResponseStatusChanged
from shared.logging import get_logger

log = get_logger("inference_router.responses")
FOLD_ATTEMPTS = 5
NO_ID = {"_id": 0}
SOURCE = "loraserve/inference-router"


class ResponseRepository:
    def __init__(self, database, bus: Bus | None = None, source: str = SOURCE):
        self.responses = database["responses"]
        self.source = source
        self.outbox = outcomes_outbox(self.responses, bus) if bus is not None else None

    async def ensure_indexes(self) -> None:
        await self.responses.create_index("id", unique=True)
        await self.responses.create_index([("status", 1), ("deadline", 1)])
        await self.responses.create_index(f"{OUTBOX}.created_at", sparse=True)

    async def insert(self, doc: dict[str, Any]) -> None:
        await self.responses.insert_one(dict(doc))

    async def get(self, org_id: str, response_id: str) -> dict[str, Any] | None:
        return await self.responses.find_one({"id": response_id, "org_id": org_id}, NO_ID)

    async def apply(self, event: ResponseStatusChanged) -> bool:
        """Fold one status event; True when it changed the stored document."""
        for _ in range(FOLD_ATTEMPTS):
            doc = await self.responses.find_one({"id": event.response_id}, NO_ID)
            if doc is None:
                try:
                    await self.responses.insert_one(document_from_event(event))
                except DuplicateKeyError:
                    pass  # another consumer stored it first: fold into theirs
                continue
            changes = fold(doc, event)
            if changes is None:
                return False
            if await self._update(doc, changes):
                return True
        log.warning("response fold gave up after concurrent updates", response_id=event.response_id)
        return False

    async def cancel(self, org_id: str, response_id: str) -> dict[str, Any] | None:
        """Mark an active response cancelled; None when it was not active any more."""
        return await self._end({"id": response_id, "org_id": org_id}, ACTIVE,
                               lambda doc: {"status": "cancelled", "completed_at": int(time.time())})

    async def fail(self, org_id: str, response_id: str, error: dict[str, str]) -> None:
        await self._end({"id": response_id, "org_id": org_id}, ACTIVE,
                        lambda doc: {"status": "failed", "error": error, "completed_at": int(time.time())})

    async def expire_overdue(self, now: float) -> list[dict[str, Any]]:
        """Background responses still queued past their completion window's deadline end failed."""
        expired = []
        async for doc in self.responses.find({"status": "queued", "deadline": {"$lt": now}}, NO_ID):
            done = await self._end({"id": doc["id"]}, {"queued"}, expiry_changes(now))
            if done is not None:
                expired.append(done)
        return expired

    async def _end(self, query: dict[str, Any], statuses, changes_of: Callable[[dict], dict]
                   ) -> dict[str, Any] | None:
        """Apply `changes_of(doc)` to the document matching `query` while its status is one of `statuses`;
        the document after, or None when it was not in those statuses any more."""
        for _ in range(FOLD_ATTEMPTS):
            doc = await self.responses.find_one({**query, "status": {"$in": sorted(statuses)}}, NO_ID)
            if doc is None:
                return None
            changes = changes_of(doc)
            if await self._update(doc, changes):
                return {**doc, **changes}
        log.warning("ending a response gave up after concurrent updates", response_id=query.get("id"))
        return None

    async def _update(self, doc: dict[str, Any], changes: dict[str, Any]) -> bool:
        """Compare-and-set `changes` on `doc` (unchanged since read: same seq and status), with the
        outcome event in the same update when they end a background Response."""
        update: dict[str, Any] = {"$set": changes}
        entry = outcome_entry({**doc, **changes}, self.source) if "status" in changes else None
        if entry is not None:
            update["$push"] = {OUTBOX: entry}
        result = await self.responses.update_one(
            {"id": doc["id"], "seq": doc.get("seq"), "status": doc["status"]}, update)
        if result.modified_count != 1:
            return False
        if entry is not None and self.outbox is not None:
            await self.outbox.deliver({"id": doc["id"]}, [entry])
        return True


def expiry_changes(now: float) -> Callable[[dict], dict]:
    def changes(doc: dict[str, Any]) -> dict[str, Any]:
        error = {"code": "deadline_exceeded",
                 "message": f"No worker started this response before its completion window "
                            f"'{doc.get('completion_window')}' deadline passed. Create it again."}
        return {"status": "failed", "error": error, "completed_at": int(now)}
    return changes
