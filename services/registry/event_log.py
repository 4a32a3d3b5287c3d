"""The registry's durable per-org log of public events, which GET /v1/events replays and tails.

One appender at a time (it consumes a single-active-consumer queue) appends each event once,
checking its CloudEvents id first: outboxes publish an event again after a crash.
Each org's entries are numbered 1, 2, 3, ... with no number skipped: an entry takes the org's
newest number + 1 and its `_id` is "<org>/<number>", so two appenders that overlap (one taking
over from another) collide on the same `_id` instead of both succeeding. So whenever number n is
in the log, every number below it is too (or expired): a reader that has sent n never finds a
smaller one later, which is what makes a resume from an id exact.
MongoDB also holds a unique index on the CloudEvents id, for an event that two overlapping
appenders write at the same moment. The embedded store has none: mongomock checks a unique index
by scanning the collection on every insert, which would make appends slow as the log grows, and
it needs none: one process runs one event loop, on which the check and the insert run with no
other task in between.

Retention: `sweep` deletes each org's entries appended before the window, oldest first, after
recording the org's newest deleted number in `event_log_heads`, so numbering never restarts
when an org's whole log has expired. There is no TTL index: MongoDB would delete entries
without recording that, and an org whose log emptied would be numbered from 1 again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.contracts.cloudevents import CloudEvent

COLLECTION = "event_log"
HEADS = "event_log_heads"
DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600
MAX_NUMBERING_TRIES = 20


class NumberingConflict(Exception):
    """Other appenders kept taking the next number (never expected with one active appender)."""


@dataclass(frozen=True)
class Entry:
    seq: int
    type: str
    event: str  # the CloudEvent's JSON, as the stream sends it


@dataclass(frozen=True)
class Start:
    """Where a stream starts: after `cursor`, or with an error whose frame carries `cursor` as its id."""

    cursor: int
    error: str | None = None  # events_expired | event_id_unknown
    message: str | None = None


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _document(org_id: str, event: CloudEvent, entry: Entry, appended_at: datetime) -> dict:
    return {"_id": f"{org_id}/{entry.seq}", "org_id": org_id, "seq": entry.seq, "event_id": event.id,
            "type": entry.type, "time": event.time, "appended_at": appended_at, "event": entry.event}


class EventLog:
    def __init__(self, database, retention_seconds: int = DEFAULT_RETENTION_SECONDS, *,
                 unique_event_ids: bool = True) -> None:
        self.entries = database[COLLECTION]
        self.heads = database[HEADS]
        self.retention_seconds = retention_seconds
        self.unique_event_ids = unique_event_ids  # False on the embedded store (see above)
        self._numbered: dict[str, int] = {}  # the newest number this appender gave each org (a hint)

    async def ensure_indexes(self) -> None:
        await self.entries.create_index([("org_id", ASCENDING), ("seq", ASCENDING)])
        await self.entries.create_index([("appended_at", ASCENDING)])
        if self.unique_event_ids:
            await self.entries.create_index([("event_id", ASCENDING)], unique=True)

    # -- appending ------------------------------------------------------------------------------
    async def append_many(self, items: list[tuple[str, CloudEvent]],
                          now: float | None = None) -> list[Entry | None]:
        """Append each (org, event) under its org's next number, in order, in one write; per item its
        entry, or None when the event is in the log already."""
        appended_at = _utc(time.time() if now is None else now)
        logged = await self._logged([event.id for _, event in items])
        entries: list[Entry | None] = []
        documents = []
        for org_id, event in items:
            if event.id in logged:
                entries.append(None)
                continue
            logged.add(event.id)
            body = event.model_dump_json(exclude_none=True)
            entry = Entry(await self._next_number(org_id), event.type, body)
            self._numbered[org_id] = entry.seq
            documents.append(_document(org_id, event, entry, appended_at))
            entries.append(entry)
        if not documents:
            return entries
        try:
            await self.entries.insert_many(documents, ordered=True)
        except (BulkWriteError, DuplicateKeyError):
            # another appender wrote meanwhile: one at a time, each settles its own clash
            self._numbered.clear()
            return [await self.append(org_id, event, now) for org_id, event in items]
        return entries

    async def append(self, org_id: str, event: CloudEvent, now: float | None = None) -> Entry | None:
        """Append `event` under the org's next number and return its entry; None when it is logged already."""
        appended_at = _utc(time.time() if now is None else now)
        body = event.model_dump_json(exclude_none=True)
        for _ in range(MAX_NUMBERING_TRIES):
            if await self._logged([event.id]):
                return None
            entry = Entry(await self._next_number(org_id), event.type, body)
            try:
                await self.entries.insert_one(_document(org_id, event, entry, appended_at))
            except DuplicateKeyError:
                self._numbered.pop(org_id, None)  # another appender took the number (or logged the event)
                continue
            self._numbered[org_id] = entry.seq
            return entry
        raise NumberingConflict(f"no free number for org {org_id} after {MAX_NUMBERING_TRIES} tries")

    async def _logged(self, event_ids: list[str]) -> set[str]:
        return {raw["event_id"] async for raw in self.entries.find({"event_id": {"$in": event_ids}},
                                                                   {"event_id": 1})}

    async def _next_number(self, org_id: str) -> int:
        if org_id not in self._numbered:
            self._numbered[org_id] = await self.newest(org_id)
        return self._numbered[org_id] + 1

    # -- reading --------------------------------------------------------------------------------
    async def last_seq(self, org_id: str) -> int:
        """The org's newest number still in the log (0 when none)."""
        last = await self.entries.find_one({"org_id": org_id}, {"seq": 1}, sort=[("seq", DESCENDING)])
        return last["seq"] if last else 0

    async def newest(self, org_id: str) -> int:
        """The org's newest number ever given (0 when none), expired entries included."""
        head = await self.heads.find_one({"_id": org_id})
        return max(await self.last_seq(org_id), head["seq"] if head else 0)

    async def oldest(self, org_id: str) -> int | None:
        first = await self.entries.find_one({"org_id": org_id}, {"seq": 1}, sort=[("seq", ASCENDING)])
        return first["seq"] if first else None

    async def read(self, org_id: str, after: int, types: frozenset[str] | None, limit: int) -> list[Entry]:
        """Up to `limit` of the org's entries numbered above `after`, oldest first; all types when None."""
        query: dict = {"org_id": org_id, "seq": {"$gt": after}}
        if types is not None:
            query["type"] = {"$in": sorted(types)}
        cursor = self.entries.find(query, {"_id": 0, "seq": 1, "type": 1, "event": 1})
        cursor = cursor.sort("seq", ASCENDING).limit(limit)
        return [Entry(raw["seq"], raw["type"], raw["event"]) async for raw in cursor]

    # -- where a stream starts ------------------------------------------------------------------
    async def start_after(self, org_id: str, after: int) -> Start:
        """After number `after`: nothing in between may have expired, and it must have been given."""
        newest = await self.newest(org_id)
        if after > newest:
            return Start(newest, "event_id_unknown",
                         f"Event id {after} is ahead of this organization's newest event ({newest}); "
                         f"reconnect with the id of this error event to follow new events.")
        oldest = await self.oldest(org_id)
        if (oldest is None and after < newest) or (oldest is not None and after < oldest - 1):
            return self._expired(f"Events after id {after}", newest if oldest is None else oldest - 1)
        return Start(after)

    async def start_since(self, org_id: str, since: float, now: float | None = None) -> Start:
        """With the first event appended at or after unix time `since`."""
        now = time.time() if now is None else now
        if since < now - self.retention_seconds and await self._has_expired(org_id):
            oldest = await self.oldest(org_id)
            kept_from = await self.newest(org_id) if oldest is None else oldest - 1
            return self._expired(f"Events since {_utc(since).isoformat()}", kept_from)
        first = await self.entries.find_one({"org_id": org_id, "appended_at": {"$gte": _utc(since)}},
                                            {"seq": 1}, sort=[("seq", ASCENDING)])
        return Start(first["seq"] - 1 if first else await self.newest(org_id))

    def _expired(self, which: str, kept_from: int) -> Start:
        return Start(kept_from, "events_expired",
                     f"{which} are past the retention of {self.retention_seconds} seconds and some were "
                     f"deleted; reconnect with the id of this error event to receive every event still kept.")

    async def _has_expired(self, org_id: str) -> bool:
        oldest = await self.oldest(org_id)
        return (oldest or 0) > 1 or (oldest is None and await self.newest(org_id) > 0)

    # -- retention ------------------------------------------------------------------------------
    async def sweep(self, now: float | None = None) -> int:
        """Delete every entry appended before the retention window; returns how many."""
        cutoff = _utc((time.time() if now is None else now) - self.retention_seconds)
        expired = self.entries.aggregate([{"$match": {"appended_at": {"$lt": cutoff}}},
                                          {"$group": {"_id": "$org_id", "seq": {"$max": "$seq"}}}])
        deleted = 0
        async for org in expired:
            # the head first: a crash in between leaves entries that the next sweep deletes
            await self.heads.update_one({"_id": org["_id"]}, {"$max": {"seq": org["seq"]}}, upsert=True)
            result = await self.entries.delete_many({"org_id": org["_id"], "seq": {"$lte": org["seq"]}})
            deleted += result.deleted_count
        return deleted
