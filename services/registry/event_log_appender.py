"""The event log's writer and upkeep: the appender, the retention sweep, and the hub that wakes streams.

The appender consumes `loraserve.registry.event-log`, a single-active-consumer queue bound to every
org's public events: however many registry instances run, one of them receives the events, in the
order the broker holds them; when it stops, the next in line takes over with what it left unacked.
Appends run one write at a time, in arrival order, each taking every event that queued up meanwhile;
a store outage is retried in place (holding the queue's order) before the messages are handed back.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from pymongo.errors import PyMongoError

from services.registry.context import Registry
from services.registry.event_log import Entry, EventLog
from services.registry.events_hub import STREAMED_TYPES, EventsHub, binding_keys, org_of
from shared.bus.base import Delivery
from shared.contracts import topology as t
from shared.contracts.cloudevents import CloudEvent
from shared.logging import get_logger

log = get_logger("registry.event_log")
PREFETCH = 256
MAX_BATCH = 256  # events appended in one write
CLOSE_WAIT_SECONDS = 10.0
RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)  # a store outage up to ~9 s is waited out in place
MAX_SWEEP_INTERVAL_SECONDS = 300.0


@dataclass(eq=False)
class _Pending:
    org_id: str
    event: CloudEvent
    done: asyncio.Future


class Appender:
    """Handlers (up to the prefetch at a time) queue their events; one task appends what has queued up
    in one write, in arrival order, and each handler returns (acks) once its event is in the log."""

    def __init__(self, event_log: EventLog, on_appended: Callable[[str, list[Entry]], None]) -> None:
        self.log = event_log
        self.on_appended = on_appended
        self.appended = 0
        self.duplicates = 0
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._writer: asyncio.Task | None = None

    async def handle(self, delivery: Delivery) -> None:
        org = org_of(delivery.routing_key)
        if org is None or delivery.event.type not in STREAMED_TYPES:
            log.warning("event_log.not_a_public_event", routing_key=delivery.routing_key,
                        type=delivery.event.type)
            return
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_forever())
        pending = _Pending(org, delivery.event, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(pending)
        await pending.done  # raises what the append raised: the message goes back to the broker

    async def close(self) -> None:
        """Finish what is queued (the consumer is stopped: nothing new comes), then stop the writer."""
        if self._writer is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), CLOSE_WAIT_SECONDS)
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        while not self._queue.empty():
            self._queue.get_nowait().done.cancel()  # not acked: the broker redelivers them

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write([p for p in batch if not p.done.done()])  # a cancelled handler: redelivered
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        try:
            entries = await self._append(batch)
        except asyncio.CancelledError:
            for pending in batch:
                pending.done.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 -- handed to each handler, whose bus requeues the message
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_exception(exc)
            return
        self._settle(batch, entries)

    def _settle(self, batch: list[_Pending], entries: list[Entry | None]) -> None:
        by_org: dict[str, list[Entry]] = {}
        for pending, entry in zip(batch, entries, strict=True):
            if entry is None:
                self.duplicates += 1  # an outbox published it again: the log has it once
            else:
                self.appended += 1
                by_org.setdefault(pending.org_id, []).append(entry)
            if not pending.done.done():
                pending.done.set_result(None)
        for org_id, appended in by_org.items():
            self.on_appended(org_id, appended)

    async def _append(self, batch: list[_Pending]) -> list[Entry | None]:
        items = [(p.org_id, p.event) for p in batch]
        for delay in RETRY_DELAYS:
            try:
                return await self.log.append_many(items)
            except PyMongoError as exc:
                log.warning("event_log.append_failed", events=len(items), retry_in=delay, error=str(exc))
                await asyncio.sleep(delay)
        return await self.log.append_many(items)


def sweep_interval(retention_seconds: int) -> float:
    return min(MAX_SWEEP_INTERVAL_SECONDS, max(1.0, retention_seconds / 20))


async def sweep_forever(event_log: EventLog) -> None:
    while True:
        await asyncio.sleep(sweep_interval(event_log.retention_seconds))
        try:
            deleted = await event_log.sweep()
        except PyMongoError as exc:
            log.warning("event_log.sweep_failed", error=str(exc))
            continue
        if deleted:
            log.info("event_log.swept", deleted=deleted)


def event_log_ctx(registry: Registry, event_log: EventLog):
    """The hub (streams' wake-ups), the appender and the sweep, for as long as the app runs."""
    async def ctx(app):
        await event_log.ensure_indexes()
        hub = EventsHub(event_log)
        nudges = await registry.bus.subscribe(t.EVENTS, binding_keys(), hub.on_delivery)
        appender = Appender(event_log, hub.appended)
        consumer = await registry.bus.consume(t.EVENT_LOG_QUEUE, appender.handle, prefetch=PREFETCH)
        tasks = [asyncio.create_task(hub.poll_forever()), asyncio.create_task(sweep_forever(event_log))]
        registry.hub = hub
        yield
        hub.close_all()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await consumer.close()
        await appender.close()
        await nudges.close()
    return ctx
