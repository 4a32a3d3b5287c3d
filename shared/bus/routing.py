"""AMQP 0-9-1 exchange routing as pure functions (the in-process bus routes with these)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from shared.contracts.topology import ExchangeType


def topic_matches(pattern: str, routing_key: str) -> bool:
    """`*` stands for exactly one dot-separated word, `#` for zero or more."""
    return _match(tuple(pattern.split(".")), tuple(routing_key.split(".")))


@lru_cache(maxsize=4096)
def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        # '#' swallows zero words, or one word and stays in place
        return _match(rest, words) or (bool(words) and _match(pattern, words[1:]))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])


def binding_matches(exchange_type: ExchangeType, binding_key: str, routing_key: str) -> bool:
    if exchange_type is ExchangeType.FANOUT:
        return True
    if exchange_type is ExchangeType.TOPIC:
        return topic_matches(binding_key, routing_key)
    return binding_key == routing_key


def route(exchange_type: ExchangeType, bindings: Iterable[tuple[str, str]], routing_key: str) -> list[str]:
    """Queue names (each once, in binding order) that `bindings` of (binding key, queue) select."""
    selected: list[str] = []
    for binding_key, queue in bindings:
        if queue not in selected and binding_matches(exchange_type, binding_key, routing_key):
            selected.append(queue)
    return selected
