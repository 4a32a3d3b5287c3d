"""The registry's bus consumers: an explicit routing table from (queue, message type) to handler."""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from services.registry.context import Registry
from services.registry.dead_letters import dead_letter_queues, on_dead_letter
from services.registry.operations import apply_status, republish
from shared.bus.base import DeadLetter, Delivery
from shared.contracts import topology as t
from shared.contracts.messages import RunGpuValidation, ValidateAdapter, ValidationStatusChanged
from shared.logging import correlation_id, get_logger

log = get_logger("registry.consumers")
MessageHandler = Callable[[Registry, Delivery], Awaitable[None]]


async def on_status_changed(registry: Registry, delivery: Delivery) -> None:
    try:
        event = ValidationStatusChanged.from_event(delivery.event)
    except (ValidationError, ValueError):
        raise DeadLetter(f"malformed {delivery.event.type} event {delivery.event.id}") from None
    changed = await apply_status(registry, event)
    if not changed and delivery.delivery_count > 1:
        await republish(registry, event)


def routing_table(slugs: list[str]) -> dict[str, dict[str, MessageHandler]]:
    table: dict[str, dict[str, MessageHandler]] = {
        t.REGISTRY_STATUS_QUEUE: {ValidationStatusChanged.TYPE: on_status_changed},
    }
    for dlq in dead_letter_queues(slugs):
        table[dlq] = {ValidateAdapter.TYPE: on_dead_letter, RunGpuValidation.TYPE: on_dead_letter}
    return table


def dispatcher(registry: Registry, handlers: dict[str, MessageHandler]):
    async def handle(delivery: Delivery) -> None:
        handler = handlers.get(delivery.event.type)
        if handler is None:
            log.warning("no handler for message; dropped", queue=delivery.queue, type=delivery.event.type)
            return
        token = correlation_id.set(delivery.event.correlationid)  # what we publish carries the cause's id
        try:
            await handler(registry, delivery)
        finally:
            correlation_id.reset(token)
    return handle


def consumers_ctx(registry: Registry):
    async def ctx(app):
        table = routing_table(registry.catalogue.slugs())
        subscriptions = [await registry.bus.consume(queue, dispatcher(registry, handlers))
                         for queue, handlers in table.items()]
        yield
        for subscription in subscriptions:
            await subscription.close()
    return ctx
