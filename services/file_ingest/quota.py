"""Per-org usage counters (`file_ingest.org_usage`, one document per org) and the quota checks on them.

An upload reserves its declared bytes and one file when it is created, with one conditional update: the
filter requires room (`bytes_total <= limit - declared`, …) and `$inc` takes it, so concurrent creates can never
all pass. Completing converts the reservation into a stored File; cancelling or expiring releases it; deleting a
File releases its bytes. Each change follows the state transition it accounts for (the transition happens
once), so a crash between the two can only over-count: the org loses room, never the platform. The embedded
start-up recounts everything from the Files and Uploads (`recount`); with several replicas the counters are
only recounted by an operator restart of the embedded kind, see README's Quotas.
"""
from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.quotas import EffectiveLimits, QuotaExceeded, Quotas

COLLECTION = "org_usage"
# files_total = files + pending_uploads (an upload becomes a file); bytes_total = stored + reserved bytes
FIELDS = ("files", "stored_bytes", "pending_uploads", "reserved_bytes", "files_total", "bytes_total")
# counter guarded -> (quota it is checked against, what the error calls its use)
GUARDED = {"files_total": "files", "bytes_total": "stored_bytes", "pending_uploads": "pending_uploads"}
REFUSAL_READS = 3


def new_upload(declared: int) -> dict[str, int]:
    return {"pending_uploads": 1, "reserved_bytes": declared, "files_total": 1, "bytes_total": declared}


def upload_ended(declared: int) -> dict[str, int]:
    """Cancelled or expired: the reservation is released."""
    return {name: -value for name, value in new_upload(declared).items()}


def upload_completed(declared: int, stored: int) -> dict[str, int]:
    return {"pending_uploads": -1, "reserved_bytes": -declared, "files": 1, "stored_bytes": stored,
            "bytes_total": stored - declared}


def new_file(size: int) -> dict[str, int]:
    return {"files": 1, "stored_bytes": size, "files_total": 1, "bytes_total": size}


def file_deleted(size: int) -> dict[str, int]:
    return {name: -value for name, value in new_file(size).items()}


class UsageLedger:
    def __init__(self, db, quotas: Quotas):
        self.collection = db[COLLECTION]
        self.quotas = quotas

    async def usage(self, org_id: str) -> dict[str, int]:
        doc = await self.collection.find_one({"_id": org_id}) or {}
        return {name: int(doc.get(name, 0)) for name in FIELDS}

    async def _ensure(self, org_id: str) -> None:
        try:
            await self.collection.update_one({"_id": org_id}, {"$setOnInsert": dict.fromkeys(FIELDS, 0)},
                                             upsert=True)
        except DuplicateKeyError:  # a concurrent first upsert made it
            pass

    async def take(self, org_id: str, changes: dict[str, int]) -> None:
        """Apply `changes` if the org stays within its limits, in one conditional update; else QuotaExceeded."""
        limits = await self.quotas.limits(org_id)
        guards = {counter: getattr(limits, quota) - changes[counter]
                  for counter, quota in GUARDED.items() if changes.get(counter, 0) > 0}
        await self._ensure(org_id)
        query: dict[str, Any] = {"_id": org_id, **{counter: {"$lte": most} for counter, most in guards.items()}}
        if await self.collection.find_one_and_update(query, {"$inc": changes},
                                                     return_document=ReturnDocument.AFTER) is None:
            raise await self._refusal(org_id, changes, limits)

    async def _refusal(self, org_id: str, changes: dict[str, int], limits: EffectiveLimits) -> QuotaExceeded:
        usage = await self.usage(org_id)
        for counter, quota in GUARDED.items():
            adding = changes.get(counter, 0)
            if adding > 0 and usage[counter] + adding > getattr(limits, quota):
                hint = "Pending uploads' declared bytes count until they complete or are cancelled." \
                    if quota == "stored_bytes" else ""
                return QuotaExceeded(quota, usage[counter], getattr(limits, quota), adding, hint)
        # room was freed between the refused update and this read: say so, the client may simply retry
        first = next(c for c in GUARDED if changes.get(c, 0) > 0)
        quota = GUARDED[first]
        return QuotaExceeded(quota, usage[first], getattr(limits, quota), changes[first])

    async def precheck_file(self, org_id: str) -> None:
        """Before streaming a file: refuse at once when no file or no byte is left (the size is known later)."""
        limits, usage = await self.quotas.limits(org_id), await self.usage(org_id)
        if usage["files_total"] >= limits.files:
            raise QuotaExceeded("files", usage["files_total"], limits.files)
        if usage["bytes_total"] >= limits.stored_bytes:
            raise QuotaExceeded("stored_bytes", usage["bytes_total"], limits.stored_bytes)

    async def give(self, org_id: str, changes: dict[str, int]) -> None:
        """Apply a release or conversion (never refused)."""
        await self._ensure(org_id)
        await self.collection.update_one({"_id": org_id}, {"$inc": changes})

    async def recount(self, files, uploads) -> int:
        """Set every org's counters from its Files and pending Uploads (start-up, nothing in flight)."""
        totals: dict[str, dict[str, int]] = {}

        def add(org: str, changes: dict[str, int]) -> None:
            row = totals.setdefault(org, dict.fromkeys(FIELDS, 0))
            for name, value in changes.items():
                row[name] += value

        async for doc in files.find({}, {"org_id": 1, "bytes": 1}):
            add(doc["org_id"], new_file(int(doc["bytes"])))
        async for doc in uploads.find({"status": "pending"}, {"org_id": 1, "bytes": 1}):
            add(doc["org_id"], new_upload(int(doc["bytes"])))
        await self.collection.delete_many({"_id": {"$nin": list(totals)}})
        for org, row in totals.items():
            await self.collection.replace_one({"_id": org}, row, upsert=True)
        return len(totals)

    async def recount_if_new(self, files, uploads) -> None:
        """The first start with quotas: count what earlier releases stored."""
        if await self.collection.find_one({}) is None:
            await self.recount(files, uploads)
