"""One queue of the in-process broker: priorities, consumers, and the RabbitMQ queue arguments it honours.

- `x-message-ttl`: a ready message older than the TTL is handed to the broker to dead-letter (on a timer, so
  it happens with nobody consuming, and again before any delivery: a consumer never gets an expired message).
  A message back from a lost connection keeps its first expiry; one held unacked by a consumer never expires.
- `x-max-length` with `x-overflow: reject-publish`: `is_full` once that many messages are ready.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.contracts.topology import Queue


@dataclass
class Envelope:
    """One message as it sits in a queue (a copy per queue it was routed to)."""

    body: bytes
    exchange: str
    routing_key: str
    priority: int = 0
    correlation_id: str | None = None
    reply_to: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    delivery_count: int = 1  # the count the next delivery will carry
    seq: int = 0  # arrival order; a requeued message keeps its place
    expires_at: float | None = None  # loop time its queue's TTL runs out; kept when it is requeued

    def copy(self) -> Envelope:
        """A fresh copy for another queue: it starts that queue's TTL anew."""
        return Envelope(
            self.body,
            self.exchange,
            self.routing_key,
            self.priority,
            self.correlation_id,
            self.reply_to,
            dict(self.headers),
            self.delivery_count,
            self.seq,
        )


class BrokerQueue:
    """Ready messages, highest priority first, then oldest first."""

    def __init__(
        self,
        name: str,
        *,
        spec: Queue | None = None,
        owner: object | None = None,
        on_expired: Callable[[BrokerQueue, list[Envelope]], None] | None = None,
    ) -> None:
        self.name = name
        self.spec = spec  # None for a private (exclusive) queue: no arguments
        self.owner = owner  # the connection an exclusive queue belongs to
        self.max_priority = spec.max_priority if spec else None
        self.single_active = bool(spec and spec.single_active_consumer)  # only the first in line gets messages
        self.max_ready = spec.max_ready if spec else None
        self._ttl = spec.message_ttl_ms / 1000 if spec and spec.message_ttl_ms is not None else None
        self._on_expired = on_expired
        # (-priority, seq, arrival, envelope): `arrival` breaks ties between envelopes of one seq, which a
        # message moved here from another queue (a retry into the shared queue) may share with one published here
        self._heap: list[tuple[int, int, int, Envelope]] = []
        self._arrivals = itertools.count()
        self._waiters: deque[asyncio.Future] = deque()
        self._line: list[object] = []  # single active consumer: consumers in the order they came
        self._turn_waiters: list[asyncio.Future] = []
        self._consumers: list[object] = []
        self._ttl_timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        """Ready messages; expired ones are moved on first, so a count never includes them."""
        self._expire_due()
        return len(self._heap)

    def is_full(self) -> bool:
        return self.max_ready is not None and len(self) >= self.max_ready

    def put(self, envelope: Envelope) -> None:
        if self._ttl is None:
            envelope.expires_at = None
        elif envelope.expires_at is None:
            envelope.expires_at = _now() + self._ttl
        priority = min(max(envelope.priority, 0), self.max_priority) if self.max_priority else 0
        heapq.heappush(self._heap, (-priority, envelope.seq, next(self._arrivals), envelope))
        if envelope.expires_at is not None:
            self._arm_ttl(envelope.expires_at)
        self._wake_one()

    async def get(self) -> Envelope:
        while True:
            while not self._heap:
                await self._wait_for_message()
            envelope = heapq.heappop(self._heap)[-1]
            if envelope.expires_at is not None and envelope.expires_at <= _now():
                self._hand_over_expired([envelope])  # the timer has not run yet; it is no less expired
                continue
            return envelope

    async def _wait_for_message(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            # a wake-up this waiter can no longer use goes to the next one
            if waiter.done() and not waiter.cancelled():
                self._wake_one()
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    # -- consumers ------------------------------------------------------------------
    @property
    def consumer_count(self) -> int:
        return len(self._consumers)

    def register(self, consumer: object) -> None:
        """A consumer started (`consumer_count`, what a passive declare tells)."""
        if consumer not in self._consumers:
            self._consumers.append(consumer)

    async def wait_turn(self, consumer: object) -> None:
        """Single active consumer: return once `consumer` is first in line (at once on other queues)."""
        if not self.single_active:
            return
        if consumer not in self._line:
            self._line.append(consumer)
        while self._line[0] is not consumer:
            waiter = asyncio.get_running_loop().create_future()
            self._turn_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._turn_waiters:
                    self._turn_waiters.remove(waiter)

    def leave(self, consumer: object) -> None:
        """`consumer` stopped: when it was the active one, the next in line takes over."""
        if consumer in self._consumers:
            self._consumers.remove(consumer)
        if consumer not in self._line:
            return
        was_active = self._line[0] is consumer
        self._line.remove(consumer)
        if was_active:
            for waiter in self._turn_waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def close(self) -> None:
        """Deleted: no timer of this queue may fire any more."""
        if self._ttl_timer is not None:
            self._ttl_timer.cancel()
            self._ttl_timer = None

    # -- expiry ---------------------------------------------------------------------
    def _arm_ttl(self, due: float) -> None:
        if self._ttl_timer is not None:
            if self._ttl_timer.when() <= due:
                return
            self._ttl_timer.cancel()
        self._ttl_timer = asyncio.get_running_loop().call_at(due, self._on_ttl_timer)

    def _on_ttl_timer(self) -> None:
        self._ttl_timer = None
        self._expire_due()

    def _expire_due(self) -> None:
        if self._ttl is None or not self._heap:
            return
        now = _now()
        expired, kept = [], []
        for entry in self._heap:
            due = entry[-1].expires_at
            (expired if due is not None and due <= now else kept).append(entry)
        if expired:
            self._heap = kept
            heapq.heapify(self._heap)
            self._hand_over_expired([entry[-1] for entry in sorted(expired, key=lambda e: e[1:3])])
        pending = [entry[-1].expires_at for entry in self._heap if entry[-1].expires_at is not None]
        if pending:
            self._arm_ttl(min(pending))

    def _hand_over_expired(self, envelopes: list[Envelope]) -> None:
        if self._on_expired is not None:
            self._on_expired(self, envelopes)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def _now() -> float:
    return asyncio.get_running_loop().time()
