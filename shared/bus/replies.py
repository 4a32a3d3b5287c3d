"""Reply streams for `Bus.request`: one queue of replies per correlation id, fed by the bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from shared.bus.base import BusError, ReplyStream
from shared.contracts.cloudevents import CloudEvent

_CLOSED = object()


class QueueReplyStream(ReplyStream):
    def __init__(self, correlation_id: str, router: ReplyRouter) -> None:
        self.correlation_id = correlation_id
        self._router = router
        self._replies: asyncio.Queue = asyncio.Queue()
        self._closed = False

    def put(self, event: CloudEvent) -> None:
        if not self._closed:
            self._replies.put_nowait(event)

    def end(self) -> None:
        """No more replies will come (the stream or the bus closed)."""
        if not self._closed:
            self._closed = True
            self._replies.put_nowait(_CLOSED)

    async def next(self, timeout: float | None = None) -> CloudEvent:
        item = await asyncio.wait_for(self._replies.get(), timeout)
        if item is _CLOSED:
            self._replies.put_nowait(_CLOSED)  # every later call sees the end too
            raise BusError(f"reply stream {self.correlation_id} is closed")
        return item

    async def _iterate(self) -> AsyncIterator[CloudEvent]:
        while True:
            try:
                yield await self.next()
            except BusError:
                return

    def __aiter__(self) -> AsyncIterator[CloudEvent]:
        return self._iterate()

    async def close(self) -> None:
        self._router.forget(self.correlation_id)
        self.end()


class ReplyRouter:
    """Demultiplexes the bus's reply address by correlation id."""

    def __init__(self) -> None:
        self._streams: dict[str, QueueReplyStream] = {}

    def open(self, correlation_id: str) -> QueueReplyStream:
        stream = QueueReplyStream(correlation_id, self)
        self._streams[correlation_id] = stream
        return stream

    def forget(self, correlation_id: str) -> None:
        self._streams.pop(correlation_id, None)

    def dispatch(self, correlation_id: str | None, event: CloudEvent) -> bool:
        stream = self._streams.get(correlation_id or "")
        if stream is None:
            return False
        stream.put(event)
        return True

    def end_all(self) -> None:
        for stream in list(self._streams.values()):
            stream.end()
        self._streams.clear()
