"""Fan-out of the public events to the open `GET /v1/events` streams.

One bus subscription per registry instance (bound to every org's public event families)
feeds every stream of the event's org; a stream that falls too far behind is ended so the
client reconnects, instead of the instance buffering without bound.
"""
from __future__ import annotations

import asyncio
import fnmatch
from collections import defaultdict
from dataclasses import dataclass, field

from shared.bus.base import Delivery
from shared.contracts.cloudevents import CloudEvent
from shared.contracts.messages import PUBLIC_EVENT_TYPES

MAX_QUEUED_PER_STREAM = 1000
PUBLIC_FAMILIES = tuple(dict.fromkeys(t.split(".", 1)[0] for t in PUBLIC_EVENT_TYPES))


def binding_keys() -> list[str]:
    """Every org's public events: `org.*.lora.#`, `org.*.file.#`."""
    return [f"org.*.{family}.#" for family in PUBLIC_FAMILIES]


def org_of(routing_key: str) -> str | None:
    parts = routing_key.split(".", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "org" else None


def matching_types(patterns: list[str]) -> set[str]:
    """The public event types selected by glob patterns such as `lora.*`."""
    return {t for t in PUBLIC_EVENT_TYPES if any(fnmatch.fnmatchcase(t, p) for p in patterns)}


@dataclass(eq=False)
class Stream:
    org_id: str
    types: frozenset[str]
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(MAX_QUEUED_PER_STREAM))
    ended: bool = False  # overflowed or the hub is closing; the handler ends the response

    def offer(self, event: CloudEvent) -> None:
        if self.ended or event.type not in self.types:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.end()

    def end(self) -> None:
        self.ended = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    async def next(self) -> CloudEvent | None:
        """The next event, or None once the stream has ended."""
        return None if self.ended and self.queue.empty() else await self.queue.get()


class EventsHub:
    def __init__(self) -> None:
        self._streams: dict[str, set[Stream]] = defaultdict(set)
        self.closing = False

    def open(self, org_id: str, types: set[str]) -> Stream:
        stream = Stream(org_id, frozenset(types))
        if self.closing:
            stream.end()
        else:
            self._streams[org_id].add(stream)
        return stream

    def close(self, stream: Stream) -> None:
        streams = self._streams.get(stream.org_id)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._streams[stream.org_id]

    def close_all(self) -> None:
        """End every open stream and refuse new ones (the server is shutting down)."""
        self.closing = True
        for streams in list(self._streams.values()):
            for stream in list(streams):
                stream.end()

    async def on_delivery(self, delivery: Delivery) -> None:
        org = org_of(delivery.routing_key)
        if org is None or delivery.event.type not in PUBLIC_EVENT_TYPES:
            return
        for stream in list(self._streams.get(org, ())):
            stream.offer(delivery.event)

    def open_streams(self) -> int:
        return sum(len(s) for s in self._streams.values())
