"""file-ingest's MongoDB collections: `files`, `uploads` and `lora_refs`, always queried by org.

`files` and `uploads` documents may carry an `outbox` of events written with them, and `file_deletions`
holds file.deleted events before their File goes (events.py); the records never see either.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument

from services.file_ingest.domain.files import FileRecord
from services.file_ingest.domain.refs import Reference
from services.file_ingest.domain.uploads import PartRecord, UploadRecord
from shared.bus.outbox import FIELD as OUTBOX

DATABASE = "file_ingest"


def _to_doc(model) -> dict[str, Any]:
    doc = model.model_dump(mode="json")
    doc["_id"] = doc.pop("id")
    return doc


def _from_doc(cls, doc: dict | None):
    if doc is None:
        return None
    doc = dict(doc)
    doc.pop(OUTBOX, None)
    doc["id"] = doc.pop("_id")
    return cls.model_validate(doc)


class FileRepository:
    def __init__(self, db):
        self.collection = db["files"]
        self.deletions = db["file_deletions"]

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("org_id", ASCENDING), ("_id", ASCENDING)])
        await self.collection.create_index([("org_id", ASCENDING), ("purpose", ASCENDING), ("_id", ASCENDING)])
        await self.collection.create_index(f"{OUTBOX}.created_at", sparse=True)
        await self.deletions.create_index([("id", ASCENDING)], unique=True)
        await self.deletions.create_index([("prepared_at", ASCENDING), ("seq", ASCENDING)])

    async def insert(self, record: FileRecord, events: Iterable[dict[str, Any]] = ()) -> None:
        await self.collection.insert_one({**_to_doc(record), OUTBOX: list(events)})

    async def get(self, org_id: str, file_id: str) -> FileRecord | None:
        return _from_doc(FileRecord, await self.collection.find_one({"_id": file_id, "org_id": org_id}))

    async def page(self, org_id: str, *, limit: int, order: str, after: str | None = None,
                   purpose: str | None = None) -> tuple[list[FileRecord], bool]:
        """One page in id order (ids sort by creation time) and whether more follow."""
        query: dict[str, Any] = {"org_id": org_id}
        if purpose is not None:
            query["purpose"] = purpose
        if after is not None:
            query["_id"] = {"$lt" if order == "desc" else "$gt": after}
        direction = DESCENDING if order == "desc" else ASCENDING
        cursor = self.collection.find(query).sort("_id", direction).limit(limit + 1)
        docs = await cursor.to_list(length=limit + 1)
        return [_from_doc(FileRecord, d) for d in docs[:limit]], len(docs) > limit

    async def delete(self, org_id: str, file_id: str) -> FileRecord | None:
        return _from_doc(FileRecord, await self.collection.find_one_and_delete({"_id": file_id, "org_id": org_id}))

    async def object_keys(self) -> set[str]:
        """Every File's blob key, every org's (the embedded start-up's orphan sweep)."""
        return {doc["object_key"] async for doc in self.collection.find({}, {"object_key": 1})}


class UploadRepository:
    def __init__(self, db):
        self.collection = db["uploads"]

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("org_id", ASCENDING), ("_id", ASCENDING)])
        await self.collection.create_index([("status", ASCENDING), ("expires_at", ASCENDING)])

    async def insert(self, record: UploadRecord) -> None:
        await self.collection.insert_one(_to_doc(record))

    async def get(self, org_id: str, upload_id: str) -> UploadRecord | None:
        return _from_doc(UploadRecord, await self.collection.find_one({"_id": upload_id, "org_id": org_id}))

    @staticmethod
    def _open(now: int) -> dict[str, Any]:
        """Pending, not expired, no completion running."""
        return {"status": "pending", "expires_at": {"$gt": now},
                "$or": [{"completing_until": None}, {"completing_until": {"$lte": now}}]}

    async def add_part(self, upload: UploadRecord, part: PartRecord, now: int, max_parts: int) -> bool:
        """Append the part if the upload is still open, has room for it and stays within its bytes."""
        query = {"_id": upload.id, "org_id": upload.org_id, f"parts.{max_parts - 1}": {"$exists": False},
                 "parts_bytes": {"$lte": upload.bytes - part.bytes}, **self._open(now)}
        update = {"$push": {"parts": part.model_dump(mode="json")}, "$inc": {"parts_bytes": part.bytes}}
        result = await self.collection.update_one(query, update)
        return result.modified_count == 1

    async def claim_completion(self, org_id: str, upload_id: str, now: int, until: int,
                               file_id: str) -> UploadRecord | None:
        doc = await self.collection.find_one_and_update(
            {"_id": upload_id, "org_id": org_id, **self._open(now)},
            {"$set": {"completing_until": until, "completing_file_id": file_id}},
            return_document=ReturnDocument.AFTER)
        return _from_doc(UploadRecord, doc)

    async def release_completion(self, org_id: str, upload_id: str) -> None:
        await self.collection.update_one({"_id": upload_id, "org_id": org_id, "status": "pending"},
                                         {"$set": {"completing_until": None, "completing_file_id": None}})

    async def mark_completed(self, org_id: str, upload_id: str, file_id: str,
                             events: Iterable[dict[str, Any]] = ()) -> UploadRecord | None:
        doc = await self.collection.find_one_and_update(
            {"_id": upload_id, "org_id": org_id, "status": "pending"},
            {"$set": {"status": "completed", "file_id": file_id, "completing_until": None,
                      "completing_file_id": None}, "$push": {OUTBOX: {"$each": list(events)}}},
            return_document=ReturnDocument.AFTER)
        return _from_doc(UploadRecord, doc)

    async def completing(self) -> list[UploadRecord]:
        """Pending uploads with a completion lease, every org's (the embedded start-up's recovery)."""
        cursor = self.collection.find({"status": "pending", "completing_until": {"$ne": None}})
        return [_from_doc(UploadRecord, doc) async for doc in cursor]

    async def live_part_keys(self) -> set[str]:
        """The blob keys of every pending upload's parts, every org's (the orphan sweep keeps these)."""
        cursor = self.collection.find({"status": "pending"}, {"parts.object_key": 1})
        return {part["object_key"] async for doc in cursor for part in doc.get("parts", [])}

    async def cancel(self, org_id: str, upload_id: str, now: int) -> UploadRecord | None:
        doc = await self.collection.find_one_and_update(
            {"_id": upload_id, "org_id": org_id, **self._open(now)},
            {"$set": {"status": "cancelled"}}, return_document=ReturnDocument.AFTER)
        return _from_doc(UploadRecord, doc)

    async def expire_next(self, now: int) -> UploadRecord | None:
        """Mark one pending upload past its expiry (and not being completed) expired; None when none is left."""
        doc = await self.collection.find_one_and_update(
            {"status": "pending", "expires_at": {"$lte": now},
             "$or": [{"completing_until": None}, {"completing_until": {"$lte": now}}]},
            {"$set": {"status": "expired"}}, return_document=ReturnDocument.AFTER)
        return _from_doc(UploadRecord, doc)


class RefRepository:
    """One document per LoRA: the files it holds and whether it has been deleted (a tombstone)."""

    def __init__(self, db):
        self.collection = db["lora_refs"]

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("file_ids", ASCENDING), ("released", ASCENDING)])

    async def apply(self, ref: Reference) -> None:
        # idempotent and order-free: replays change nothing, and a deletion seen first is never undone
        if ref.released:
            update = {"$set": {"org_id": ref.org_id, "released": True},
                      "$setOnInsert": {"file_ids": list(ref.file_ids)}}
        else:
            update = {"$set": {"org_id": ref.org_id, "file_ids": list(ref.file_ids)},
                      "$setOnInsert": {"released": False}}
        update["$inc"] = {"events_folded": 1}  # deliveries seen, replays included: for operators and tests
        await self.collection.update_one({"_id": ref.lora_id}, update, upsert=True)

    async def unreleased(self) -> dict[str, Reference]:
        """Every LoRA still holding files, by id (the start-up rebuild compares them with the registry)."""
        return {doc["_id"]: Reference(lora_id=doc["_id"], org_id=doc["org_id"], file_ids=tuple(doc["file_ids"]),
                                      released=False)
                async for doc in self.collection.find({"released": False})}

    async def holders(self, file_id: str, limit: int = 10) -> list[str]:
        cursor = self.collection.find({"file_ids": file_id, "released": False}).limit(limit)
        return [doc["_id"] for doc in await cursor.to_list(length=limit)]
