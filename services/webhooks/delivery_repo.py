"""Webhook deliveries in Mongo (`webhooks.deliveries`): one per (event, endpoint), with every attempt made.

A document: {id, org_id, endpoint_id, event_id, event_type, webhook_id, body, status: pending|delivered|failed,
failure_reason, attempts: [{attempted_at, status_code, error, latency_ms, blocked}], attempt_count,
next_attempt_at, first_attempt_at, delivered_at, created_at, claim, claimed_until}. Times are epoch seconds.
`_id` is the id too.
`body` is the event exactly as every attempt sends it. The worker claims a due delivery with one conditional
update (claim token and lease), so two replicas never make the same attempt; a claim whose holder died lapses
at `claimed_until` and the delivery is due again. `endpoint_health` keeps, per endpoint, since when its
deliveries have failed without a success in between (what disabling an endpoint is decided on).
"""
from __future__ import annotations

import hashlib
import secrets as random
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.webhooks.catalog import WebhookEvent

COLLECTION = "deliveries"
HEALTH_COLLECTION = "endpoint_health"
ID_PREFIX = "whdel_"
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
HIDDEN = {"_id": 0, "claim": 0, "claimed_until": 0}


def delivery_id(event_id: str, endpoint_id: str) -> str:
    """Fixed for an (event, endpoint) pair: it is also the `webhook-id` a receiver de-duplicates on."""
    return ID_PREFIX + hashlib.sha256(f"{event_id}:{endpoint_id}".encode()).hexdigest()[:32]


def new_delivery(event: WebhookEvent, endpoint_id: str, now: float, claim_seconds: float) -> dict[str, Any]:
    """A pending delivery, claimed from birth by the process that stores it (it attempts it at once, without
    a claim round trip); if that process dies, the claim lapses and any worker takes it."""
    ident = delivery_id(event.id, endpoint_id)
    return {"_id": ident, "id": ident, "org_id": event.org_id, "endpoint_id": endpoint_id, "event_id": event.id,
            "event_type": event.type, "webhook_id": ident, "body": event.body.decode(), "status": PENDING,
            "failure_reason": None, "attempts": [], "attempt_count": 0, "next_attempt_at": now,
            "first_attempt_at": None, "delivered_at": None, "created_at": now, "claim": random.token_hex(12),
            "claimed_until": now + claim_seconds}


class DeliveryRepository:
    def __init__(self, database):
        self.deliveries = database[COLLECTION]
        self.health = database[HEALTH_COLLECTION]

    async def ensure_indexes(self) -> None:
        # no unique index of its own: `_id` is the delivery id, a digest of (event id, endpoint id), so MongoDB's
        # `_id` index makes a second delivery of one event to one endpoint a DuplicateKeyError (and the embedded
        # store checks `_id` without scanning the collection, as it would for any other unique index)
        await self.deliveries.create_index([("event_id", ASCENDING), ("endpoint_id", ASCENDING)])
        await self.deliveries.create_index([("status", ASCENDING), ("next_attempt_at", ASCENDING)])
        await self.deliveries.create_index([("org_id", ASCENDING), ("endpoint_id", ASCENDING),
                                            ("created_at", DESCENDING), ("id", DESCENDING)])
        await self.health.create_index([("endpoint_id", ASCENDING)], unique=True)

    async def add(self, event: WebhookEvent, endpoint_id: str, now: float, claim_seconds: float) -> dict | None:
        """Store the delivery of `event` to the endpoint, claimed by the caller; None when it was stored
        already (a redelivered or re-published event)."""
        document = new_delivery(event, endpoint_id, now, claim_seconds)
        try:
            await self.deliveries.insert_one(dict(document))
        except DuplicateKeyError:
            return None
        del document["_id"]
        return document

    async def claim_due(self, now: float, lease_seconds: float) -> dict | None:
        """Take the most overdue pending delivery nobody holds, for `lease_seconds`."""
        claimed = await self.deliveries.find_one_and_update(
            {"status": PENDING, "next_attempt_at": {"$lte": now}, "claimed_until": {"$lte": now}},
            {"$set": {"claim": random.token_hex(12), "claimed_until": now + lease_seconds}},
            sort=[("next_attempt_at", ASCENDING)], return_document=ReturnDocument.AFTER)
        if claimed is not None:  # (no projection here: mongomock then returns None for AFTER)
            claimed.pop("_id", None)
        return claimed

    async def record_attempt(self, claimed: dict, attempt: dict, changes: dict) -> bool:
        """Append an attempt and apply `changes` (status, next_attempt_at, …) while the claim still holds;
        False when it lapsed and another worker took the delivery over."""
        result = await self.deliveries.update_one(
            {"_id": claimed["id"], "claim": claimed["claim"], "status": PENDING},
            {"$push": {"attempts": attempt}, "$inc": {"attempt_count": 1},
             "$set": {**changes, "claim": None, "claimed_until": 0.0}})
        return result.modified_count == 1

    async def end(self, claimed: dict, reason: str) -> None:
        """Fail a claimed delivery without an attempt (its endpoint was deleted or disabled)."""
        await self.deliveries.update_one({"_id": claimed["id"], "claim": claimed["claim"], "status": PENDING},
                                         {"$set": {"status": FAILED, "failure_reason": reason,
                                                   "next_attempt_at": None, "claim": None,
                                                   "claimed_until": 0.0}})

    async def release(self, claims: list[str]) -> None:
        """Give interrupted claims back at once (a stopping worker), rather than when their lease lapses."""
        if claims:
            await self.deliveries.update_many({"claim": {"$in": claims}, "status": PENDING},
                                              {"$set": {"claim": None, "claimed_until": 0.0}})

    async def fail_pending(self, endpoint_id: str, reason: str) -> int:
        result = await self.deliveries.update_many(
            {"endpoint_id": endpoint_id, "status": PENDING},
            {"$set": {"status": FAILED, "failure_reason": reason, "next_attempt_at": None}})
        return result.modified_count

    async def expire(self, before: float) -> int:
        """Drop the log of deliveries that ended (delivered or failed) and were created before `before`."""
        result = await self.deliveries.delete_many({"status": {"$in": [DELIVERED, FAILED]},
                                                    "created_at": {"$lt": before}})
        return result.deleted_count

    async def get(self, org_id: str, endpoint_id: str, ident: str) -> dict | None:
        return await self.deliveries.find_one({"org_id": org_id, "endpoint_id": endpoint_id, "id": ident},
                                              HIDDEN)

    async def page(self, org_id: str, endpoint_id: str, after: dict | None, limit: int) -> list[dict]:
        """Up to `limit` deliveries to the endpoint, newest first, after the cursor delivery."""
        query: dict = {"org_id": org_id, "endpoint_id": endpoint_id}
        if after is not None:
            query["$or"] = [{"created_at": {"$lt": after["created_at"]}},
                            {"created_at": after["created_at"], "id": {"$lt": after["id"]}}]
        cursor = self.deliveries.find(query, HIDDEN).sort([("created_at", DESCENDING), ("id", DESCENDING)])
        return [doc async for doc in cursor.limit(limit)]

    async def count(self, query: dict) -> int:
        return await self.deliveries.count_documents(query)

    # -- endpoint health ------------------------------------------------------------------
    async def failing_since(self, endpoint_id: str, now: float) -> float:
        """Note a failed attempt; the start of the endpoint's unbroken run of failures."""
        document = await self.health.find_one_and_update(
            {"endpoint_id": endpoint_id}, {"$min": {"failing_since": now}}, upsert=True,
            return_document=ReturnDocument.AFTER)
        return float(document["failing_since"])

    async def clear_failing(self, endpoint_id: str) -> None:
        await self.health.delete_one({"endpoint_id": endpoint_id})
