"""What the open `GET /v1/events` streams read, and what wakes them when their org's event log grows.

Streams read their events from the log (`event_log`), never from the bus, so every frame carries
the log's number and a resumed stream continues exactly where it stopped. The hub keeps, per org
with open streams, the newest number known to be in the log, and a tail: the newest entries this
instance's appender wrote, in memory, so that streams following live read those without a query.
The appender reports each write at once; another instance's appends are noticed by polling that
org's newest number, a few times right after the org's event went by on the bus (the other
appender is about to write it) and every `poll_seconds` in any case.
"""
from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from itertools import islice

from pymongo.errors import PyMongoError

from services.registry.event_log import Entry, EventLog
from shared.bus.base import Delivery
from shared.contracts import topology as t
from shared.contracts.messages import PUBLIC_EVENT_TYPES, RESPONSE_OUTCOMES
from shared.logging import get_logger

log = get_logger("registry.events_hub")

# the public events: LoRAs and files, and the ends of background Responses
STREAMED_TYPES = (*PUBLIC_EVENT_TYPES, *(m.TYPE for m in RESPONSE_OUTCOMES.values()))
POLL_SECONDS = 2.0
NUDGE_DELAYS = (0.02, 0.05, 0.1, 0.25, 0.5)  # polls after an org's event went by on the bus
LOCAL_APPENDER_SECONDS = 5.0  # appended here this recently: this instance is the active appender
TAIL_ENTRIES = 256  # per org: a stream further behind reads the log
TAIL_BYTES = 2 * 1024 * 1024


def binding_keys() -> list[str]:
    """Every org's public events, as the event log's queue binds them."""
    return list(t.EVENT_LOG_BINDINGS)


def org_of(routing_key: str) -> str | None:
    parts = routing_key.split(".", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "org" else None


def matching_types(patterns: list[str]) -> set[str]:
    """The public event types selected by glob patterns such as `lora.*`."""
    return {t for t in STREAMED_TYPES if any(fnmatch.fnmatchcase(t, p) for p in patterns)}


@dataclass(eq=False)
class Tail:
    """An org's newest entries that this instance appended, numbered without a gap."""

    entries: deque[Entry] = field(default_factory=deque)
    size: int = 0

    def add(self, entry: Entry) -> None:
        if self.entries and entry.seq != self.entries[-1].seq + 1:
            self.entries.clear()  # another appender wrote in between: start again from here
            self.size = 0
        self.entries.append(entry)
        self.size += len(entry.event)
        while len(self.entries) > 1 and (len(self.entries) > TAIL_ENTRIES or self.size > TAIL_BYTES):
            self.size -= len(self.entries.popleft().event)

    def after(self, cursor: int, known: int) -> list[Entry] | None:
        """Every entry after `cursor` when this tail holds them all up to `known`; None when it does not."""
        if not self.entries or self.entries[0].seq > cursor + 1 or self.entries[-1].seq < known:
            return None
        return list(islice(self.entries, max(0, cursor + 1 - self.entries[0].seq), None))


@dataclass(eq=False)
class Stream:
    org_id: str
    types: frozenset[str] | None  # None: every type
    cursor: int  # the number of the last entry sent (or skipped as filtered out)
    ended: bool = False  # the hub is closing; the handler ends the response


class EventsHub:
    def __init__(self, event_log: EventLog, poll_seconds: float = POLL_SECONDS) -> None:
        self.log = event_log
        self.poll_seconds = poll_seconds
        self.closing = False
        self._streams: dict[str, set[Stream]] = defaultdict(set)
        self._known: dict[str, int] = {}  # per org with open streams: the newest number known in the log
        self._tails: dict[str, Tail] = {}
        self._waiters: dict[str, set[asyncio.Future]] = defaultdict(set)
        self._nudging: dict[str, asyncio.Task] = {}
        self._appended_here_at = 0.0

    # -- streams --------------------------------------------------------------------------------
    def open(self, org_id: str, types: frozenset[str] | None, cursor: int) -> Stream:
        """A stream that continues after number `cursor` (one the org's log has given)."""
        stream = Stream(org_id, types, cursor, ended=self.closing)
        if not self.closing:
            self._streams[org_id].add(stream)
            self.advanced(org_id, cursor)
        return stream

    def close(self, stream: Stream) -> None:
        streams = self._streams.get(stream.org_id)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._streams[stream.org_id]
                self._known.pop(stream.org_id, None)
                self._tails.pop(stream.org_id, None)
                nudging = self._nudging.pop(stream.org_id, None)
                if nudging is not None:
                    nudging.cancel()

    def close_all(self) -> None:
        """End every open stream and refuse new ones (the server is shutting down)."""
        self.closing = True
        for streams in list(self._streams.values()):
            for stream in list(streams):
                stream.ended = True
        for org_id in list(self._waiters):
            self._wake(org_id)
        for task in self._nudging.values():
            task.cancel()

    def open_streams(self) -> int:
        return sum(len(s) for s in self._streams.values())

    def known(self, org_id: str) -> int:
        """A number every entry up to which is in the org's log (the log numbers without gaps)."""
        return self._known.get(org_id, 0)

    async def read(self, stream: Stream, limit: int) -> tuple[list[Entry], int]:
        """Up to `limit` entries after the stream's cursor that it wants, and the number it has seen up to
        (beyond the last entry when the ones in between were filtered out)."""
        known = self.known(stream.org_id)  # taken before reading: every entry up to it is in the log by now
        tail = self._tails.get(stream.org_id)
        cached = tail.after(stream.cursor, known) if tail is not None else None
        if cached is None:
            entries = await self.log.read(stream.org_id, stream.cursor, stream.types, limit)
            newest = entries[-1].seq if entries else stream.cursor
        else:
            entries = [e for e in cached if stream.types is None or e.type in stream.types][:limit]
            newest = cached[-1].seq if cached else stream.cursor
        if len(entries) == limit:
            return entries, entries[-1].seq
        return entries, max(known, newest)

    async def wait(self, stream: Stream, timeout: float) -> None:
        """Until the org's log holds a number above the stream's cursor, the hub closes, or `timeout`."""
        if stream.ended or self.known(stream.org_id) > stream.cursor:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[stream.org_id].add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout)
        finally:
            waiters = self._waiters.get(stream.org_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[stream.org_id]

    # -- what tells the hub the log grew --------------------------------------------------------
    def appended(self, org_id: str, entries: list[Entry]) -> None:
        """This instance's appender wrote these entries of the org, in order."""
        self._appended_here_at = time.monotonic()
        if org_id in self._streams:
            tail = self._tails.setdefault(org_id, Tail())
            for entry in entries:
                tail.add(entry)
        self.advanced(org_id, entries[-1].seq)

    def advanced(self, org_id: str, seq: int) -> None:
        if org_id in self._streams and seq > self._known.get(org_id, 0):
            self._known[org_id] = seq
            self._wake(org_id)

    def _wake(self, org_id: str) -> None:
        for waiter in self._waiters.get(org_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    async def on_delivery(self, delivery: Delivery) -> None:
        """An org's public event went by on the bus: some instance's appender is about to log it."""
        org = org_of(delivery.routing_key)
        if org is None or org not in self._streams or org in self._nudging or self.closing:
            return
        if time.monotonic() - self._appended_here_at < LOCAL_APPENDER_SECONDS:
            return  # the appender is this instance's: it reports its appends itself
        self._nudging[org] = asyncio.get_running_loop().create_task(self._nudge(org))

    async def _nudge(self, org_id: str) -> None:
        try:
            before = self.known(org_id)
            for delay in NUDGE_DELAYS:
                await asyncio.sleep(delay)
                if await self._poll(org_id) > before:
                    return
        finally:
            if self._nudging.get(org_id) is asyncio.current_task():
                del self._nudging[org_id]

    async def _poll(self, org_id: str) -> int:
        seq = await self.log.last_seq(org_id)
        self.advanced(org_id, seq)
        return seq

    async def poll_forever(self) -> None:
        """Notice appends made by another instance's appender, for every org with open streams."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            for org_id in list(self._streams):
                try:
                    await self._poll(org_id)
                except PyMongoError as exc:  # the store is down: the streams wait, the next poll retries
                    log.warning("events_hub.poll_failed", org_id=org_id, error=str(exc))
                    break
