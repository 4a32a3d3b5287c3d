"""LoRA documents in Mongo (`registry.loras`). Every public read and write is scoped by org.

Changes are compare-and-set on the document's `version`: the caller computes the new
document with the pure domain functions and `replace` applies it only if nobody changed
the document in between. The events a change causes are stored in the same update, in the
document's `outbox` (shared/bus/outbox.py), which the domain never sees. A deleted document has
no outbox left, so its lora.deleted event is kept in `deletions` first (shared/bus/outbox.py).
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.registry.domain.lora import LoraDocument
from shared.bus.outbox import FIELD as OUTBOX

COLLECTION = "loras"
DELETIONS = "deletions"  # lora.deleted events, written before their document is deleted (DeletionOutbox)
KEY_FIELDS = ("org_id", "id")


class NameTaken(Exception):
    """Another LoRA of the org has this name (the unique index said so)."""


class LoraRepository:
    def __init__(self, database):
        self.loras = database[COLLECTION]
        self.deletions = database[DELETIONS]

    @staticmethod
    def key(document: LoraDocument) -> dict[str, str]:
        return {"org_id": document.org_id, "id": document.id}

    async def ensure_indexes(self) -> None:
        await self.loras.create_index([("org_id", ASCENDING), ("name", ASCENDING)], unique=True)
        await self.loras.create_index([("id", ASCENDING)], unique=True)
        await self.loras.create_index([("org_id", ASCENDING), ("created_ns", ASCENDING), ("id", ASCENDING)])
        await self.loras.create_index([("created_ns", ASCENDING), ("id", ASCENDING)])
        await self.loras.create_index([("validations.id", ASCENDING)])
        await self.loras.create_index([("validations.status", ASCENDING),
                                       ("validations.created_at", ASCENDING)])
        await self.loras.create_index(f"{OUTBOX}.created_at", sparse=True)
        await self.deletions.create_index([("id", ASCENDING)], unique=True)
        await self.deletions.create_index([("prepared_at", ASCENDING), ("seq", ASCENDING)])

    async def insert(self, document: LoraDocument, events: Iterable[dict[str, Any]] = ()) -> None:
        try:
            await self.loras.insert_one({**document.model_dump(mode="json"), OUTBOX: list(events)})
        except DuplicateKeyError:
            raise NameTaken(document.name) from None

    async def get(self, org_id: str, *, lora_id: str | None = None,
                  name: str | None = None) -> LoraDocument | None:
        query = {"org_id": org_id, **({"id": lora_id} if lora_id is not None else {"name": name})}
        return _document(await self.loras.find_one(query))

    async def by_validation(self, org_id: str, lora_id: str, validation_id: str) -> LoraDocument | None:
        query = {"org_id": org_id, "id": lora_id, "validations.id": validation_id}
        return _document(await self.loras.find_one(query))

    async def replace(self, before: LoraDocument, after: LoraDocument,
                      events: Iterable[dict[str, Any]] = ()) -> bool:
        """Store `after`, and add `events` to its outbox, if the stored document is still at
        `before.version`; False when it moved on. Entries already in the outbox stay."""
        update: dict[str, Any] = {"$set": after.model_dump(mode="json")}
        if events := list(events):
            update["$push"] = {OUTBOX: {"$each": events}}
        stored = await self.loras.find_one_and_update(
            {**self.key(before), "version": before.version}, update, return_document=ReturnDocument.AFTER)
        return stored is not None

    async def delete(self, document: LoraDocument, *, at_version: bool = False) -> bool:
        """Delete the document (only while it is still at `document.version` when `at_version`)."""
        query = {**self.key(document), **({"version": document.version} if at_version else {})}
        result = await self.loras.delete_one(query)
        return result.deleted_count == 1

    async def page(self, org_id: str | None, *, after: tuple[int, str] | None, limit: int,
                   descending: bool) -> list[LoraDocument]:
        """Up to `limit` documents after the cursor (created_ns, id) in creation order;
        every org's when org_id is None."""
        query: dict = {} if org_id is None else {"org_id": org_id}
        if after is not None:
            op = "$lt" if descending else "$gt"
            created_ns, lora_id = after
            query["$or"] = [{"created_ns": {op: created_ns}}, {"created_ns": created_ns, "id": {op: lora_id}}]
        direction = DESCENDING if descending else ASCENDING
        cursor = self.loras.find(query).sort([("created_ns", direction), ("id", direction)]).limit(limit)
        return [_document(raw) async for raw in cursor]

    async def stuck(self, created_before: int, limit: int = 500) -> AsyncIterator[LoraDocument]:
        """LoRAs with a record still pending or running that was created at or before `created_before`."""
        query = {"validations": {"$elemMatch": {"status": {"$in": ["pending", "running"]},
                                                "created_at": {"$lte": created_before}}}}
        async for raw in self.loras.find(query).limit(limit):
            yield _document(raw)

    async def count(self, org_id: str) -> int:
        return await self.loras.count_documents({"org_id": org_id})

    async def validations_in_flight(self, org_id: str) -> int:
        """The org's validation records still pending or running, over all its LoRAs."""
        busy = {"$in": ["pending", "running"]}
        pipeline = [{"$match": {"org_id": org_id, "validations.status": busy}},
                    {"$unwind": "$validations"}, {"$match": {"validations.status": busy}}, {"$count": "n"}]
        rows = await self.loras.aggregate(pipeline).to_list(length=1)
        return rows[0]["n"] if rows else 0

    async def ping(self) -> bool:
        await self.loras.find_one({}, {"_id": 1})
        return True


def _document(raw: dict | None) -> LoraDocument | None:
    if raw is None:
        return None
    raw.pop("_id", None)
    raw.pop(OUTBOX, None)
    return LoraDocument.model_validate(raw)
