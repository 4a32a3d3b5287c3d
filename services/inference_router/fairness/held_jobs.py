"""Background jobs that wait at the router for their org's turn, kept in their Response document.

A background Response is stored `queued` with its whole job under `held` (the job, its priority and
correlation id, which replica holds it and until when). That replica renews its claim while the job
waits; a replica that died stops renewing, and once the claim lapses any replica's sweep claims the job
and queues it again, so a waiting job is never lost. Publishing comes before `held` is removed: a crash
in between publishes the job twice, and the second run's result is ignored (the fold and the usage
record keep the first), which is better than losing it.
"""
from __future__ import annotations

import time
from typing import Any

from pymongo import ReturnDocument

from shared.contracts.messages import GenerateResponse

CLAIM_SECONDS = 30.0  # a claim lapses this long after its holder's last renewal
RENEW_EVERY_SECONDS = 10.0


def held_fields(job: GenerateResponse, *, cost: int, priority: int, correlation_id: str | None,
                owner: str) -> dict[str, Any]:
    return {"job": job.model_dump(mode="json"), "cost": cost, "priority": priority, "correlation_id": correlation_id,
            "owner": owner, "claimed_until": time.time() + CLAIM_SECONDS}


class HeldJobs:
    def __init__(self, responses_collection, owner: str):
        self.responses = responses_collection
        self.owner = owner

    async def ensure_indexes(self) -> None:
        await self.responses.create_index("held.claimed_until", sparse=True)

    async def still_wanted(self, response_id: str) -> bool:
        """Whether the Response still waits for this job (not cancelled, expired or sent by another replica)."""
        doc = await self.responses.find_one({"id": response_id, "status": "queued", "held": {"$exists": True}},
                                            {"_id": 0, "id": 1})
        return doc is not None

    async def published(self, response_id: str) -> None:
        await self.responses.update_one({"id": response_id}, {"$unset": {"held": ""}})

    async def renew(self, response_ids: list[str]) -> None:
        if response_ids:
            await self.responses.update_many(
                {"id": {"$in": response_ids}, "held.owner": self.owner},
                {"$set": {"held.claimed_until": time.time() + CLAIM_SECONDS}})

    async def claim_lapsed(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Take over the waiting jobs whose holder stopped renewing (it crashed or was scaled in)."""
        claimed = []
        for _ in range(limit):
            now = time.time()
            doc = await self.responses.find_one_and_update(
                {"status": "queued", "held.claimed_until": {"$lt": now}},
                {"$set": {"held.owner": self.owner, "held.claimed_until": now + CLAIM_SECONDS}},
                return_document=ReturnDocument.AFTER)
            if doc is None:
                break
            doc.pop("_id", None)
            claimed.append(doc)
        return claimed
