"""Runs one handler on one delivery and settles it: the same steps for both buses.

Each bus supplies a `Settler` with its own ack, requeue and dead-letter primitives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from shared.bus import policy
from shared.bus.base import Delivery, Handler
from shared.logging import correlation_id, get_logger

log = get_logger("shared.bus")


class Settler(Protocol):
    async def settle(self, outcome: policy.Outcome, delivery_count: int) -> None:
        """Ack, requeue or dead-letter; never raises (a lost connection means redelivery)."""


async def handle(
    build: Callable[[], Delivery],
    handler: Handler,
    *,
    queue: str,
    limit: int,
    delivery_count: int,
    settler: Settler,
) -> None:
    try:
        delivery = build()
    except ValueError as exc:  # not a CloudEvent: no retry can fix it
        outcome = policy.Outcome(policy.Action.DEAD_LETTER, policy.REASON_MALFORMED, policy.describe(exc))
        log.error("bus.malformed_message", queue=queue, error=outcome.error)
        await settler.settle(outcome, delivery_count)
        return
    token = correlation_id.set(delivery.event.correlationid)
    try:
        await _run(delivery, handler, limit=limit, settler=settler)
    finally:
        correlation_id.reset(token)


async def _run(delivery: Delivery, handler: Handler, *, limit: int, settler: Settler) -> None:
    count = delivery.delivery_count
    outcome = policy.on_arrival(count, limit)
    if outcome is None:
        try:
            await handler(delivery)
            outcome = policy.ACK
        except asyncio.CancelledError:
            raise  # the bus is aborting: the broker redelivers what was not acked
        except Exception as exc:  # noqa: BLE001 -- any handler failure is decided by policy, never lost
            outcome = policy.after_handler(exc, count, limit)
    _log_outcome(delivery, outcome)
    await settler.settle(outcome, count)


def _log_outcome(delivery: Delivery, outcome: policy.Outcome) -> None:
    fields = {
        "queue": delivery.queue,
        "type": delivery.event.type,
        "event_id": delivery.event.id,
        "delivery_count": delivery.delivery_count,
    }
    if outcome.action is policy.Action.REQUEUE:
        log.warning("bus.handler_failed_requeued", error=outcome.error, **fields)
    elif outcome.action is policy.Action.DEAD_LETTER:
        log.error("bus.dead_lettered", reason=outcome.reason, error=outcome.error, **fields)
    else:
        log.debug("bus.acked", **fields)
