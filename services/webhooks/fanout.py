"""Public bus events in, one stored delivery per subscribed endpoint out.

Consumes the webhooks service's own durable queue (shared/contracts/topology.py WEBHOOKS_QUEUE). A message is
acked only once every delivery it causes is stored; a redelivered or re-published event (same CloudEvents id,
so the same webhook event id) finds its deliveries stored already and adds none.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from services.webhooks.catalog import webhook_event
from services.webhooks.context import Webhooks
from services.webhooks.delivery_repo import DeliveryRepository
from services.webhooks.delivery_worker import DeliveryWorker, WorkerConfig
from services.webhooks.repository import EndpointRepository
from shared.bus.base import DeadLetter, Delivery
from shared.contracts import topology as t
from shared.logging import get_logger

log = get_logger("webhooks.fanout")
PREFETCH = 64


class Fanout:
    def __init__(self, deliveries: DeliveryRepository, endpoints: EndpointRepository,
                 hand_over: Callable[[list[dict]], None], claim_seconds: float,
                 clock: Callable[[], float] = time.time):
        self.deliveries, self.endpoints, self.hand_over = deliveries, endpoints, hand_over
        self.claim_seconds, self.clock = claim_seconds, clock

    async def on_event(self, delivery: Delivery) -> None:
        try:
            event = webhook_event(delivery.event)
        except ValueError as exc:
            raise DeadLetter(f"{delivery.event.type} event {delivery.event.id}: {exc}") from None
        if event is None:
            return
        added: list[dict] = []
        try:
            for endpoint in await self.endpoints.subscribed(event.org_id, event.type):
                stored = await self.deliveries.add(event, endpoint["id"], self.clock(), self.claim_seconds)
                if stored is not None:
                    added.append(stored)
        finally:  # what was stored is sent even if a later store failed (the redelivery will not hand it over)
            if added:
                self.hand_over(added)
        log.debug("webhooks.fanned_out", event_id=event.id, type=event.type, org=event.org_id,
                  deliveries=len(added))


def deliveries_ctx(ctx: Webhooks):
    """cleanup_ctx of the whole delivery side: indexes, the delivery loop, then the consumer that hands it
    what it stores (stopped in reverse: no new deliveries, then the loop gives back what it held)."""
    async def run(app):
        deliveries = DeliveryRepository(ctx.database)
        await deliveries.ensure_indexes()
        worker = DeliveryWorker(deliveries, ctx.repository, ctx.egress, WorkerConfig.from_settings(ctx.settings),
                                clock=ctx.clock)
        fanout = Fanout(deliveries, ctx.repository, worker.hand_over, worker.config.claim_seconds, clock=ctx.clock)
        worker.start()
        try:
            subscription = await ctx.bus.consume(t.WEBHOOKS_QUEUE, fanout.on_event, prefetch=PREFETCH)
            try:
                yield
            finally:
                await subscription.close()
        finally:
            await worker.stop()
    return run
