"""What the bus does after a handler ran, and how it reads a dead letter's reason."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.bus import policy
from shared.bus.base import DeadLetter, Requeue


def test_success_acks():
    assert policy.after_handler(None, 1, 3).action is policy.Action.ACK


def test_failures_requeue_until_the_limit_then_dead_letter():
    error = RuntimeError("disk full")
    assert policy.after_handler(error, 2, 3).action is policy.Action.REQUEUE
    last = policy.after_handler(error, 3, 3)
    assert (last.action, last.reason) == (policy.Action.DEAD_LETTER, "delivery_limit")
    assert last.error == "RuntimeError: disk full"


def test_requeue_is_bounded_by_the_same_limit():
    assert policy.after_handler(Requeue(), 1, 3).action is policy.Action.REQUEUE
    assert policy.after_handler(Requeue(), 3, 3).action is policy.Action.DEAD_LETTER


def test_dead_letter_from_the_handler_is_immediate():
    outcome = policy.after_handler(DeadLetter("bad config"), 1, 3)
    assert (outcome.action, outcome.reason) == (policy.Action.DEAD_LETTER, "rejected")


def test_a_message_over_the_limit_on_arrival_is_not_handled():
    assert policy.on_arrival(3, 3) is None
    assert policy.on_arrival(4, 3).reason == "delivery_limit"


def test_death_header_round_trips():
    outcome = policy.Outcome(policy.Action.DEAD_LETTER, "delivery_limit", "boom")
    headers = policy.death_header(outcome, queue="q", count=3, routing_key="validate.tiny")
    death = policy.parse_death(headers)
    assert (death.reason, death.queue, death.count, death.error, death.routing_key) == (
        "delivery_limit",
        "q",
        3,
        "boom",
        "validate.tiny",
    )


def test_broker_x_death_is_read_when_the_bus_wrote_none():
    # what RabbitMQ 3.10 puts on a message its quorum queue dead-lettered itself
    headers = {
        "x-death": [
            {
                "count": 1,
                "reason": "delivery_limit",
                "queue": "q",
                "time": datetime.now(UTC),
                "exchange": "",
                "routing-keys": ["q"],
            }
        ]
    }
    death = policy.parse_death(headers)
    assert (death.reason, death.queue, death.count, death.error) == ("delivery_limit", "q", 1, None)


def test_delivery_counts():
    assert policy.quorum_delivery_count({"x-delivery-count": 0}) == 1
    assert policy.quorum_delivery_count({"x-delivery-count": 2}) == 3
    assert policy.classic_delivery_count({}, redelivered=False) == 1
    assert policy.classic_delivery_count({policy.ATTEMPT_HEADER: 2}, redelivered=True) == 3
    assert policy.quorum_delivery_count({"x-delivery-count": "junk"}) == 1
