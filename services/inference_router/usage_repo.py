"""Usage records in the router's own database (`inference_router.usage`): one per finished request.

A record's `id` is the request's response id, unique: a redelivered status event or a job run
twice records nothing new, so the report never counts a request twice. Inserts, not upserts,
so the embedded store journals them as operations. Every read is scoped by org.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pymongo.errors import DuplicateKeyError

from shared.contracts.usage import UsageQuery


@dataclass(frozen=True)
class UsageRecord:
    id: str  # the response id (chatcmpl-…, resp_…, msg_…; a validation's response id)
    org_id: str
    api_key_id: str | None
    model: str
    lora_id: str | None
    completion_window: str | None
    kind: str  # chat, response, message, background, validation
    input_tokens: int
    output_tokens: int
    latency_seconds: float
    finished_at: int  # unix seconds


@dataclass(frozen=True)
class UsageSum:
    """One bucket's sum for one combination of the grouped fields (None where not grouped)."""

    bucket_start: int
    model: str | None
    api_key_id: str | None
    lora_id: str | None
    input_tokens: int
    output_tokens: int
    requests: int


FILTERS = {"models": "model", "api_key_ids": "api_key_id", "lora_ids": "lora_id"}


class UsageRepository:
    def __init__(self, database):
        self.usage = database["usage"]

    async def ensure_indexes(self) -> None:
        await self.usage.create_index("id", unique=True)
        await self.usage.create_index([("org_id", 1), ("finished_at", 1)])

    async def record(self, record: UsageRecord) -> bool:
        """Store a finished request's usage; False when it was already recorded."""
        try:
            await self.usage.insert_one(asdict(record))
        except DuplicateKeyError:
            return False
        return True

    async def get(self, org_id: str, record_id: str) -> dict[str, Any] | None:
        return await self.usage.find_one({"id": record_id, "org_id": org_id}, {"_id": 0})

    async def sums(self, org_id: str, query: UsageQuery, start: int, end: int) -> list[UsageSum]:
        """The org's usage in [start, end) summed per bucket (aligned to `query.start_time`) and group."""
        match: dict[str, Any] = {"org_id": org_id, "finished_at": {"$gte": start, "$lt": end}}
        for param, field in FILTERS.items():
            values = getattr(query, param)
            if values:
                match[field] = {"$in": values}
        offset = {"$subtract": ["$finished_at", query.start_time]}
        group_id: dict[str, Any] = {"bucket": {"$subtract": [offset, {"$mod": [offset, query.bucket_seconds]}]}}
        for field in query.group_by or ():
            group_id[field] = f"${field}"
        pipeline = [{"$match": match},
                    {"$group": {"_id": group_id, "input_tokens": {"$sum": "$input_tokens"},
                                "output_tokens": {"$sum": "$output_tokens"}, "requests": {"$sum": 1}}}]
        sums = []
        async for row in self.usage.aggregate(pipeline):
            key = row["_id"]
            sums.append(UsageSum(bucket_start=query.start_time + int(key["bucket"]), model=key.get("model"),
                                 api_key_id=key.get("api_key_id"), lora_id=key.get("lora_id"),
                                 input_tokens=int(row["input_tokens"]), output_tokens=int(row["output_tokens"]),
                                 requests=int(row["requests"])))
        return sums
