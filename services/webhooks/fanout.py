"""Public bus events in, one stored delivery per subscribed endpoint out.

Consumes the webhooks service's own durable queue (shared/contracts/topology.py WEBHOOKS_QUEUE). A message is
acked only once every delivery it causes is stored; a redelivered or re-published event (same CloudEvents id,
so the same webhook event id) finds its deliveries stored already and adds none.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from services.webhooks.catalog import webhook_event
from services.webhooks.context import Webhooks
from services.webhooks.delivery_repo import DeliveryRepository
from services.webhooks.delivery_worker import DeliveryWorker, WorkerConfig, worker_ctx
from services.webhooks.repository import EndpointRepository
from shared.bus.base import Bus, DeadLetter, Delivery
from shared.contracts import topology as t
from shared.logging import get_logger

log = get_logger("webhooks.fanout")
PREFETCH = 64


class Fanout:
    def __init__(self, deliveries: DeliveryRepository, endpoints: EndpointRepository,
                 wake: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time):
        self.deliveries, self.endpoints, self.wake, self.clock = deliveries, endpoints, wake, clock

    async def on_event(self, delivery: Delivery) -> None:
        try:
            event = webhook_event(delivery.event)
        except ValueError as exc:
            raise DeadLetter(f"{delivery.event.type} event {delivery.event.id}: {exc}") from None
        if event is None:
            return
        added = 0
        for endpoint in await self.endpoints.subscribed(event.org_id, event.type):
            added += await self.deliveries.add(event, endpoint["id"], self.clock())
        if added:
            self.wake()
        log.debug("webhooks.fanned_out", event_id=event.id, type=event.type, org=event.org_id, deliveries=added)


def fanout_ctx(bus: Bus, fanout: Fanout):
    """cleanup_ctx: consume the public events for as long as the app runs."""
    async def ctx(app):
        subscription = await bus.consume(t.WEBHOOKS_QUEUE, fanout.on_event, prefetch=PREFETCH)
        yield
        await subscription.close()
    return ctx


def deliveries_ctx(ctx: Webhooks):
    """cleanup_ctx of the whole delivery side: indexes, the delivery loop, then the consumer that wakes it
    (stopped in reverse: no new deliveries, then the loop gives back what it held)."""
    async def run(app):
        deliveries = DeliveryRepository(ctx.database)
        await deliveries.ensure_indexes()
        worker = DeliveryWorker(deliveries, ctx.repository, ctx.egress, WorkerConfig.from_settings(ctx.settings),
                                clock=ctx.clock)
        fanout = Fanout(deliveries, ctx.repository, wake=worker.wake, clock=ctx.clock)
        async with contextlib.AsyncExitStack() as stack:
            for part in (worker_ctx(worker), fanout_ctx(ctx.bus, fanout)):
                await stack.enter_async_context(contextlib.asynccontextmanager(part)(app))
            yield
    return run
