"""Response documents in the router's own database (`inference_router.responses`).

Every read is scoped by org. Folding is a compare-and-set on `seq`, so concurrent
consumers and redelivered events never lose an update or apply one twice.
"""
from __future__ import annotations

import time
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.inference_router.response_docs import ACTIVE, document_from_event, fold
from shared.contracts.messages import ResponseStatusChanged
from shared.logging import get_logger

log = get_logger("inference_router.responses")
FOLD_ATTEMPTS = 5
NO_ID = {"_id": 0}


def _without_id(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    # not a projection: mongomock re-reads a projected find_one_and_update with the (now stale) filter
    if doc is not None:
        doc.pop("_id", None)
    return doc


class ResponseRepository:
    def __init__(self, database):
        self.responses = database["responses"]

    async def ensure_indexes(self) -> None:
        await self.responses.create_index("id", unique=True)
        await self.responses.create_index([("status", 1), ("deadline", 1)])

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
            result = await self.responses.update_one({"id": doc["id"], "seq": doc["seq"], "status": doc["status"]},
                                                     {"$set": changes})
            if result.modified_count == 1:
                return True
        log.warning("response fold gave up after concurrent updates", response_id=event.response_id)
        return False

    async def cancel(self, org_id: str, response_id: str) -> dict[str, Any] | None:
        """Mark an active response cancelled; None when it was not active any more."""
        return _without_id(await self.responses.find_one_and_update(
            {"id": response_id, "org_id": org_id, "status": {"$in": sorted(ACTIVE)}},
            {"$set": {"status": "cancelled", "completed_at": int(time.time())}},
            return_document=ReturnDocument.AFTER))

    async def fail(self, org_id: str, response_id: str, error: dict[str, str]) -> None:
        await self.responses.update_one(
            {"id": response_id, "org_id": org_id, "status": {"$in": sorted(ACTIVE)}},
            {"$set": {"status": "failed", "error": error, "completed_at": int(time.time())}})

    async def expire_overdue(self, now: float) -> list[dict[str, Any]]:
        """Background responses still queued past their completion window's deadline end failed."""
        expired = []
        async for doc in self.responses.find({"status": "queued", "deadline": {"$lt": now}}, NO_ID):
            error = {"code": "deadline_exceeded",
                     "message": f"No worker started this response before its completion window "
                                f"'{doc.get('completion_window')}' deadline passed. Create it again."}
            done = _without_id(await self.responses.find_one_and_update(
                {"id": doc["id"], "status": "queued"},
                {"$set": {"status": "failed", "error": error, "completed_at": int(now)}},
                return_document=ReturnDocument.AFTER))
            if done is not None:
                expired.append(done)
        return expired
