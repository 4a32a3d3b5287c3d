"""The worker's seat in its model's affinity ring: which adapters' jobs come to it first.

A starting worker takes the lowest seat nobody consumes (a dead worker's seat is taken over by the next one to
start, adapters and all) and binds it to the model's consistent-hash exchange; a stopping one unbinds its seat
before it drains, so new jobs for its adapters go to the others at once. Two workers racing for one seat share it
(no job is lost, only some affinity): the seat is a plain queue, not an exclusive one, which would drop what it
held when its worker died.
"""
from __future__ import annotations

from dataclasses import dataclass

from shared.bus.base import Bus, Handler, Subscription
from shared.contracts import topology
from shared.logging import get_logger

log = get_logger("gpu_worker.affinity")


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
        if await bus.consumers(queue.name) == 0:
            subscription = await bus.consume(queue, handler, prefetch=prefetch)
            log.info("affinity_seat_taken", queue=queue.name, seat=number)
            return Seat(queue, subscription)
    log.warning("affinity_seats_full", seats=topology.AFFINITY_SEATS)
    return None
