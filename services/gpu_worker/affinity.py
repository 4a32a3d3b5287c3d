"""The worker's seat in its model's affinity ring: which adapters' jobs come to it first.

A starting worker takes the lowest seat nobody consumes (a dead worker's seat is taken over by the next one to
start, adapters and all) and binds it to the model's consistent-hash exchange; a stopping one unbinds its seat
before it drains, so new jobs for its adapters go to the others at once. A worker is its seat's exclusive
consumer (two workers starting together never share one), but the seat is no exclusive queue, which would drop
what it held when its worker died.

A seat whose worker died and that no new worker took stays bound: its adapters' jobs would each wait out the wait
before the shared queue serves them. Every worker tends the ring (`Ring.check`): a seat found without a consumer at
two checks in a row is unbound (its jobs then go to the live workers at once; the next worker to take it binds it
again), each worker binds its own seat again, in case a check raced with its start, and a worker whose seat's
consumer was lost with its connection takes a seat again (the lowest free one: its own, unless another worker took
it meanwhile).

A seat made by workers with another wait or batch size (its queue arguments) cannot be declared as it is now: the
first new worker to come to it unbinds it, lets what waits there expire into the shared queue, deletes it (only
if empty and unused) and makes it anew.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from shared.bus.base import Bus, BusError, Delivery, Handler, QueueInUse, QueueMismatch, Subscription
from shared.contracts import topology
from shared.logging import get_logger

log = get_logger("gpu_worker.affinity")
RENEW_WITHIN_SECONDS = 65.0  # the longest wait a seat can have (LORASERVE_AFFINITY_WAIT_SECONDS <= 60), and some
RENEW_POLL_SECONDS = 0.25


def route_of(delivery: Delivery, shared_queue: str) -> str:
    """How an inference job reached this worker (the metric `loraserve_worker_jobs_received_total{route}`)."""
    if delivery.queue != shared_queue:
        return "seat"
    if delivery.death is not None and delivery.death.reason == "expired":
        return "shared_after_wait"
    return "shared"


@dataclass(frozen=True)
class SeatOptions:
    wait_ms: int  # how long a job waits for this worker before any worker may take it
    max_ready: int  # jobs waiting beyond this go to the shared queue at once


@dataclass
class Seat:
    queue: topology.Queue
    subscription: Subscription

    async def leave(self, bus: Bus) -> None:
        """Stop receiving new jobs (unbind), then finish those already here."""
        await bus.unbind(self.queue)
        await self.subscription.close()
        log.info("affinity_seat_left", queue=self.queue.name)


async def take_seat(bus: Bus, slug: str, handler: Handler, *, prefetch: int, options: SeatOptions) -> Seat | None:
    """Consume the lowest free seat of the model's ring; None when all are taken (the shared queue still serves)."""
    for number in range(topology.AFFINITY_SEATS):
        queue = topology.affinity_queue(slug, number, wait_ms=options.wait_ms, max_ready=options.max_ready)
        if await bus.consumers(queue.name):
            continue
        subscription = await _claim(bus, queue, handler, prefetch)
        if subscription is not None:
            log.info("affinity_seat_taken", queue=queue.name, seat=number)
            return Seat(queue, subscription)
    log.warning("affinity_seats_full", seats=topology.AFFINITY_SEATS)
    return None


async def _claim(bus: Bus, queue: topology.Queue, handler: Handler, prefetch: int) -> Subscription | None:
    try:
        return await bus.consume(queue, handler, prefetch=prefetch, exclusive=True)
    except QueueInUse:
        return None  # another worker starting at the same moment took it
    except QueueMismatch:
        pass  # made by workers with another wait or batch: renew it, or it would stay unusable
    log.info("affinity_seat_renewed", queue=queue.name)
    await bus.unbind(queue)  # nothing new arrives; what waits there expires into the shared queue (its own wait)
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + RENEW_WITHIN_SECONDS
    while not await bus.delete_if_empty(queue.name):
        if loop.time() > give_up_at:
            return None  # someone else consumes it now, or its jobs do not expire: leave it be
        await asyncio.sleep(RENEW_POLL_SECONDS)
    try:
        return await bus.consume(queue, handler, prefetch=prefetch, exclusive=True)
    except (QueueInUse, QueueMismatch):
        return None


class Ring:
    """This worker's place in its model's ring: its seat, taken again whenever it was lost (the bus does not restore
    a seat's consumer after a reconnect: another worker may hold the seat by then), and the ring's upkeep."""

    def __init__(self, bus: Bus, slug: str, handler: Handler, *, prefetch: int, options: SeatOptions) -> None:
        self.bus, self.slug, self.handler, self.prefetch, self.options = bus, slug, handler, prefetch, options
        self.seat: Seat | None = None
        self._idle: set[int] = set()

    async def join(self) -> None:
        self.seat = await take_seat(self.bus, self.slug, self.handler, prefetch=self.prefetch, options=self.options)

    async def tend(self, interval: float) -> None:
        """Runs until cancelled: every `interval` seconds, `check`."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
            except BusError as exc:  # the broker is away: the next round tries again
                log.warning("affinity_ring_check_failed", error=str(exc))

    async def check(self) -> None:
        """Take a seat again if ours was lost, bind ours again, and unbind orphaned seats."""
        if self.seat is None or self.seat.subscription.lost:
            if self.seat is not None:
                await self.seat.subscription.close()
                log.info("affinity_seat_lost", queue=self.seat.queue.name)
            await self.join()
        if self.seat is not None:
            await self.bus.bind(self.seat.queue)
        own = self.seat.queue.name if self.seat is not None else None
        self._idle = await unbind_orphans(self.bus, self.slug, self.options, own=own, idle_before=self._idle)

    async def leave(self) -> None:
        if self.seat is not None and not self.seat.subscription.lost:
            await self.seat.leave(self.bus)


async def unbind_orphans(bus: Bus, slug: str, options: SeatOptions, *, own: str | None,
                         idle_before: set[int]) -> set[int]:
    """Unbind the seats that have had no consumer since the last check; returns the seats idle now. Seats are
    taken lowest first and never deleted, so the first seat that does not exist ends the ring."""
    idle: set[int] = set()
    for number in range(topology.AFFINITY_SEATS):
        queue = topology.affinity_queue(slug, number, wait_ms=options.wait_ms, max_ready=options.max_ready)
        if queue.name == own:
            continue
        consumers = await bus.consumers(queue.name)
        if consumers is None:
            break
        if consumers == 0:
            idle.add(number)
            if number in idle_before:
                await bus.unbind(queue)
                log.debug("affinity_seat_unbound", queue=queue.name)  # again each round until taken
    return idle
