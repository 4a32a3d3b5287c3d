"""Events stored with the change that causes them and published after it (a transactional outbox).

A change writes its events into the changed document's `outbox` array in the same single-document
update (atomic in MongoDB and in the embedded store), each entry one CloudEvents envelope whose
`id` and `time` are fixed then. The writer publishes the entries after the write and pulls each
one once the broker confirmed it; what a crash or a bus outage left behind is published again,
unchanged, by the owning service at start-up and by its periodic sweep. So every event goes out at
least once, and a re-publish carries the same CloudEvents id: consumers de-duplicate on it.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from shared.bus.base import Bus
from shared.contracts.cloudevents import CloudEvent, Message
from shared.logging import get_logger

log = get_logger("shared.bus.outbox")
FIELD = "outbox"
# the sweep leaves younger entries to their writer, which publishes them right after its write
# (a few bus publish timeouts at most); start-up takes every entry
GRACE_SECONDS = 60.0
SWEEP_LIMIT = 500


def outbox_entry(message: Message, *, source: str, correlation_id: str | None = None,
                 now: float | None = None) -> dict[str, Any]:
    """One event ready to store: its envelope (id fixed from now on) and where it goes."""
    event = message.to_event(source, correlation_id)
    return {"id": event.id, "exchange": message.EXCHANGE, "routing_key": message.routing_key(),
            "event": event.model_dump(mode="json", exclude_none=True),
            "created_at": time.time() if now is None else now}


async def publish_entry(bus: Bus, entry: dict[str, Any]) -> CloudEvent:
    event = CloudEvent.model_validate(entry["event"])
    await bus.publish_event(event, exchange=entry["exchange"], routing_key=entry["routing_key"])
    return event


class DocumentOutbox:
    """The `outbox` arrays of one collection's documents, addressed by `key_fields`."""

    def __init__(self, collection, bus: Bus, key_fields: tuple[str, ...] = ("id",)):
        self.collection, self.bus, self.key_fields = collection, bus, key_fields

    async def ensure_indexes(self) -> None:
        await self.collection.create_index(f"{FIELD}.created_at", sparse=True)

    async def deliver(self, key: dict[str, Any], entries: Iterable[dict[str, Any]]) -> bool:
        """Publish `entries` in order, pulling each from the document once published; False when
        one could not be published (it and the rest stay for the sweep)."""
        for entry in entries:
            try:
                await publish_entry(self.bus, entry)
            except Exception as exc:  # noqa: BLE001 -- the change is stored: its events wait in the outbox
                log.warning("outbox.publish_failed", type=entry["event"].get("type"), event_id=entry["id"],
                            error=str(exc))
                return False
            await self.collection.update_one(key, {"$pull": {FIELD: {"id": entry["id"]}}})
        return True

    async def pending(self, key: dict[str, Any]) -> list[dict[str, Any]]:
        doc = await self.collection.find_one(key, {"_id": 0, FIELD: 1})
        return list((doc or {}).get(FIELD) or [])

    async def flush_document(self, key: dict[str, Any]) -> bool:
        """Publish whatever one document's outbox still holds."""
        return await self.deliver(key, await self.pending(key))

    async def flush(self, older_than: float, limit: int = SWEEP_LIMIT) -> int:
        """Publish the outbox of every document holding an entry written before `older_than`;
        returns how many entries went out."""
        projection = {"_id": 0, FIELD: 1, **{name: 1 for name in self.key_fields}}
        cursor = self.collection.find({f"{FIELD}.created_at": {"$lt": older_than}}, projection).limit(limit)
        published = 0
        for doc in [doc async for doc in cursor]:
            entries = doc.get(FIELD) or []
            if await self.deliver({name: doc[name] for name in self.key_fields}, entries):
                published += len(entries)
        return published


class DeletionOutbox:
    """Events of documents being deleted, which can have no outbox of their own: the deletion event, and
    whatever the document's outbox still held (else they would go with it), are written here first
    (`ref` names the document), the delete then commits them, and they are published after. Entries
    whose document is gone are published by the sweep; those whose document still exists after the grace
    were never committed (the delete lost a race, or the process died first) and are dropped."""

    def __init__(self, collection, documents, bus: Bus):
        self.collection, self.documents, self.bus = collection, documents, bus

    async def prepare(self, entries: list[dict[str, Any]], ref: dict[str, Any]) -> None:
        now = time.time()
        await self.collection.insert_many([{**entry, "ref": ref, "prepared_at": now, "seq": seq}
                                           for seq, entry in enumerate(entries)])

    async def drop(self, entries: list[dict[str, Any]]) -> None:
        await self.collection.delete_many({"id": {"$in": [entry["id"] for entry in entries]}})

    async def deliver(self, entries: list[dict[str, Any]]) -> bool:
        """Publish in order, dropping each once published; False when one failed (it and the rest wait)."""
        for entry in entries:
            try:
                await publish_entry(self.bus, entry)
            except Exception as exc:  # noqa: BLE001 -- the document is gone; its events wait here for the sweep
                log.warning("outbox.publish_failed", type=entry["event"].get("type"), event_id=entry["id"],
                            error=str(exc))
                return False
            await self.collection.delete_one({"id": entry["id"]})
        return True

    async def flush(self, older_than: float, limit: int = SWEEP_LIMIT) -> int:
        uncommitted_before = time.time() - GRACE_SECONDS
        cursor = self.collection.find({"prepared_at": {"$lt": older_than}}, {"_id": 0})
        entries = [entry async for entry in cursor.sort([("prepared_at", 1), ("seq", 1)]).limit(limit)]
        published = 0
        for entry in entries:
            if await self.documents.find_one(entry["ref"], {"_id": 1}) is None:
                if not await self.deliver([entry]):
                    break  # keep the order: the rest wait for the next round
                published += 1
            elif entry["prepared_at"] < uncommitted_before:
                await self.drop([entry])
        return published


async def keep_flushing(flush: Callable[[float], Awaitable[int]], interval: float, what: str) -> None:
    """At start-up every entry left over (nothing of this process is in flight yet), then every
    `interval` the entries older than the grace."""
    older_than = time.time()
    while True:
        try:
            published = await flush(older_than)
            if published:
                log.info("outbox.republished", what=what, events=published)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("outbox.sweep_failed", what=what)
        await asyncio.sleep(interval)
        older_than = time.time() - GRACE_SECONDS
