"""The message bus: `make_bus` picks RabbitMQ when `LORASERVE_AMQP_URL` is set, else the in-process bus."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.bus.base import (
    Bus,
    BusError,
    BusRejected,
    DeadLetter,
    DeathRecord,
    Delivery,
    Handler,
    QueueInUse,
    QueueMismatch,
    ReplyStream,
    Requeue,
    Subscription,
)
from shared.contracts.topology import topology

if TYPE_CHECKING:
    from shared.settings import Settings

__all__ = [
    "Bus",
    "BusError",
    "BusRejected",
    "DeadLetter",
    "DeathRecord",
    "Delivery",
    "Handler",
    "QueueInUse",
    "QueueMismatch",
    "ReplyStream",
    "Requeue",
    "Subscription",
    "make_bus",
]


def make_bus(settings: Settings, slugs: list[str]) -> Bus:
    """A bus for the catalogue's model slugs; not connected until `await bus.start()`."""
    if settings.amqp_url:
        from shared.bus.rabbitmq import RabbitBus  # aio-pika only where RabbitMQ is used

        return RabbitBus(settings.amqp_url, topology(slugs, adapter_affinity=settings.adapter_affinity))
    from shared.bus.inprocess import InProcessBus

    return InProcessBus(topology(slugs, adapter_affinity=settings.adapter_affinity))
