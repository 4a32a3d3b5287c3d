"""What happens to a delivery around its handler: pure decisions shared by both buses, no I/O.

The delivery limit means the same on every queue of either bus: a handler sees a
message at most `limit` times through failures; a message that arrives with a
higher count (its consumer crashed `limit` times) is dead-lettered unhandled.
Quorum queues also carry `x-delivery-limit` as the broker's own backstop.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from shared.bus.base import DeadLetter, DeathRecord
from shared.contracts.topology import Queue, QueueType

ATTEMPT_HEADER = "x-loraserve-attempt"  # classic queues: which delivery this copy is
DEATH_HEADER = "x-loraserve-death"  # dead letters the bus wrote: reason, queue, count, error
MAX_ERROR_CHARS = 1000

REASON_REJECTED = "rejected"
REASON_DELIVERY_LIMIT = "delivery_limit"
REASON_MALFORMED = "malformed"


class Action(str, Enum):
    ACK = "ack"
    REQUEUE = "requeue"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Outcome:
    action: Action
    reason: str | None = None
    error: str | None = None


ACK = Outcome(Action.ACK)


def delivery_limit(queue: Queue, classic_limit: int) -> int:
    """Quorum queues carry their limit; classic ones get the limit the bus counts itself."""
    return queue.delivery_limit if queue.delivery_limit is not None else classic_limit


def is_classic(queue: Queue) -> bool:
    return queue.type is QueueType.CLASSIC


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR_CHARS]


def on_arrival(delivery_count: int, limit: int) -> Outcome | None:
    """Dead-letter, unhandled, a message whose earlier consumers died `limit` times."""
    if delivery_count > limit:
        error = f"delivered {delivery_count} times; the limit is {limit}"
        return Outcome(Action.DEAD_LETTER, REASON_DELIVERY_LIMIT, error)
    return None


def after_handler(exc: BaseException | None, delivery_count: int, limit: int) -> Outcome:
    if exc is None:
        return ACK
    error = describe(exc)
    if isinstance(exc, DeadLetter):
        return Outcome(Action.DEAD_LETTER, REASON_REJECTED, error)
    if delivery_count >= limit:
        return Outcome(Action.DEAD_LETTER, REASON_DELIVERY_LIMIT, error)
    return Outcome(Action.REQUEUE, None, error)


def death_header(outcome: Outcome, *, queue: str, count: int, routing_key: str) -> dict[str, Any]:
    record = {
        "reason": outcome.reason or REASON_REJECTED,
        "queue": queue,
        "count": count,
        "routing_key": routing_key,
    }
    if outcome.error:
        record["error"] = outcome.error
    return {DEATH_HEADER: record}


def parse_death(headers: dict[str, Any]) -> DeathRecord | None:
    """Our own death header first; else the broker's `x-death` (its newest entry)."""
    own = headers.get(DEATH_HEADER)
    if isinstance(own, dict):
        return DeathRecord(
            reason=str(own.get("reason", REASON_REJECTED)),
            queue=str(own.get("queue", "")),
            count=_as_int(own.get("count"), 1),
            error=_as_str(own.get("error")),
            routing_key=_as_str(own.get("routing_key")),
        )
    broker = headers.get("x-death")
    if isinstance(broker, list) and broker and isinstance(broker[0], dict):
        newest = broker[0]
        keys = newest.get("routing-keys") or [None]
        return DeathRecord(
            reason=str(newest.get("reason", "")),
            queue=str(newest.get("queue", "")),
            count=_as_int(newest.get("count"), 1),  # the broker counts dead-letterings, not deliveries
            routing_key=_as_str(keys[0]),
        )
    return None


def quorum_delivery_count(headers: dict[str, Any]) -> int:
    """RabbitMQ 3.10 numbers returns in `x-delivery-count` (0 on the first delivery)."""
    return _as_int(headers.get("x-delivery-count"), 0) + 1


def classic_delivery_count(headers: dict[str, Any], redelivered: bool) -> int:
    """Classic queues count nothing: the bus carries the attempt in a header, plus one for a crash."""
    return _as_int(headers.get(ATTEMPT_HEADER), 1) + (1 if redelivered else 0)


def _as_int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _as_str(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None
