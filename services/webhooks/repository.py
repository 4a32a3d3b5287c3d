"""Webhook endpoint documents in Mongo (`webhooks.endpoints`); every read and write is scoped by org.

A document: {id, org_id, name, url, event_types, status: enabled|disabled, status_reason, created_at, updated_at,
created_ns, secret: {sealed, hint}, previous_secret: {sealed, expires_at} | null}. Secrets are sealed by the
SecretBox (bound to the endpoint id); only `hint` is readable without the key.
"""
from __future__ import annotations

import secrets as random
import time

from pymongo import ASCENDING, DESCENDING, ReturnDocument

from services.webhooks.secrets import SecretBox
from services.webhooks.signing import secret_hint

COLLECTION = "endpoints"
ID_PREFIX = "whep_"
GRACE_SECONDS = 24 * 3600  # how long a rotated-out secret still signs, when the caller asked to keep it
ENABLED, DISABLED = "enabled", "disabled"


def new_endpoint_id() -> str:
    return ID_PREFIX + random.token_hex(12)


class EndpointRepository:
    def __init__(self, database, secret_box: SecretBox):
        self.endpoints = database[COLLECTION]
        self.box = secret_box

    async def ensure_indexes(self) -> None:
        await self.endpoints.create_index([("id", ASCENDING)], unique=True)
        await self.endpoints.create_index([("org_id", ASCENDING), ("created_ns", ASCENDING), ("id", ASCENDING)])
        await self.endpoints.create_index([("org_id", ASCENDING), ("event_types", ASCENDING),
                                           ("status", ASCENDING)])

    def sealed(self, endpoint_id: str, secret: str) -> dict:
        return {"sealed": self.box.seal(secret, endpoint_id), "hint": secret_hint(secret)}

    async def insert(self, org_id: str, name: str, url: str, event_types: list[str], secret: str) -> dict:
        now_ns = time.time_ns()
        endpoint_id = new_endpoint_id()
        document = {"id": endpoint_id, "org_id": org_id, "name": name, "url": url, "event_types": event_types,
                    "status": ENABLED, "status_reason": None, "created_at": now_ns // 10**9,
                    "updated_at": now_ns // 10**9, "created_ns": now_ns,
                    "secret": self.sealed(endpoint_id, secret), "previous_secret": None}
        await self.endpoints.insert_one(dict(document))
        return document

    async def get(self, org_id: str, endpoint_id: str) -> dict | None:
        return await self.endpoints.find_one({"org_id": org_id, "id": endpoint_id}, {"_id": 0})

    async def count(self, org_id: str) -> int:
        return await self.endpoints.count_documents({"org_id": org_id})

    async def page(self, org_id: str, after: dict | None, limit: int) -> list[dict]:
        """Up to `limit` endpoints of the org, newest first, after the cursor endpoint."""
        query: dict = {"org_id": org_id}
        if after is not None:
            query["$or"] = [{"created_ns": {"$lt": after["created_ns"]}},
                            {"created_ns": after["created_ns"], "id": {"$lt": after["id"]}}]
        cursor = self.endpoints.find(query, {"_id": 0}).sort([("created_ns", DESCENDING), ("id", DESCENDING)])
        return [doc async for doc in cursor.limit(limit)]

    async def update(self, org_id: str, endpoint_id: str, changes: dict) -> dict | None:
        """Apply `changes`; updated_at moves only when something in them differs from what is stored."""
        current = await self.get(org_id, endpoint_id)
        if current is None:
            return None
        changed = {k: v for k, v in changes.items() if current.get(k) != v}
        if not changed:
            return current
        changed["updated_at"] = int(time.time())
        if changed.get("status") == ENABLED:
            changed["status_reason"] = None
        return await self._set(org_id, endpoint_id, changed)

    async def rotate(self, org_id: str, endpoint_id: str, secret: str, keep_old: bool, now: float) -> dict | None:
        current = await self.get(org_id, endpoint_id)
        if current is None:
            return None
        previous = ({"sealed": current["secret"]["sealed"], "expires_at": now + GRACE_SECONDS}
                    if keep_old else None)
        return await self._set(org_id, endpoint_id, {"secret": self.sealed(endpoint_id, secret),
                                                     "previous_secret": previous, "updated_at": int(now)})

    async def delete(self, org_id: str, endpoint_id: str) -> bool:
        result = await self.endpoints.delete_one({"org_id": org_id, "id": endpoint_id})
        return result.deleted_count == 1

    async def subscribed(self, org_id: str, event_type: str) -> list[dict]:
        """The org's enabled endpoints subscribed to `event_type`."""
        query = {"org_id": org_id, "event_types": event_type, "status": ENABLED}
        return [doc async for doc in self.endpoints.find(query, {"_id": 0})]

    def signing_secrets(self, doc: dict, now: float) -> list[str]:
        """Plaintext `whsec_…` secrets to sign with: the current one, then a rotated-out one still in its grace."""
        found = [self.box.open(doc["secret"]["sealed"], doc["id"])]
        previous = doc.get("previous_secret")
        if previous and previous["expires_at"] > now:
            found.append(self.box.open(previous["sealed"], doc["id"]))
        return found

    async def set_status(self, org_id: str, endpoint_id: str, status: str, reason: str | None) -> None:
        await self.endpoints.update_one({"org_id": org_id, "id": endpoint_id},
                                        {"$set": {"status": status, "status_reason": reason}})

    async def _set(self, org_id: str, endpoint_id: str, fields: dict) -> dict | None:
        return await self.endpoints.find_one_and_update({"org_id": org_id, "id": endpoint_id}, {"$set": fields},
                                                        projection={"_id": 0},
                                                        return_document=ReturnDocument.AFTER)

    async def ping(self) -> bool:
        await self.endpoints.find_one({}, {"_id": 1})
        return True
