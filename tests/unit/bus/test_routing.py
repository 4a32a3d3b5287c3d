"""Topic routing as RabbitMQ does it: `*` is one word, `#` is zero or more."""

from __future__ import annotations

import pytest

from shared.bus.routing import route, topic_matches
from shared.contracts.topology import ExchangeType


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("org.*.lora.created", "org.org-a.lora.created", True),
        ("org.*.lora.created", "org.org-a.lora.deleted", False),
        ("org.org-a.#", "org.org-a.file.created", True),
        ("org.org-a.#", "org.org-b.file.created", False),
        ("org.org-a.#", "org.org-a", True),  # '#' may stand for no word at all
        ("org.*", "org.org-a.file.created", False),  # '*' is exactly one word
        ("org.*.response.#", "org.o.response.status.changed", True),
        ("#", "anything.at.all", True),
        ("#.changed", "validation.status.changed", True),
        ("a.#.z", "a.z", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.#.z", "a.b.c", False),
    ],
)
def test_topic_patterns(pattern, key, matches):
    assert topic_matches(pattern, key) is matches


def test_direct_routes_exact_keys_and_fanout_ignores_them():
    bindings = [("validate.tiny", "q1"), ("validate.big", "q2"), ("validate.tiny", "q3")]
    assert route(ExchangeType.DIRECT, bindings, "validate.tiny") == ["q1", "q3"]
    assert route(ExchangeType.FANOUT, bindings, "whatever") == ["q1", "q2", "q3"]


def test_a_queue_bound_twice_gets_one_copy():
    bindings = [("org.*.lora.created", "refs"), ("org.#", "refs")]
    assert route(ExchangeType.TOPIC, bindings, "org.a.lora.created") == ["refs"]
