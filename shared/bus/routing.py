"""AMQP 0-9-1 exchange routing as pure functions (the in-process bus routes with these): direct, topic and
fanout, and the consistent-hash exchange of the rabbitmq_consistent_hash_exchange plugin."""

from __future__ import annotations

import bisect
import hashlib
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
    if exchange_type is ExchangeType.CONSISTENT_HASH:
        picked = consistent_hash_pick(bindings, routing_key)
        return [picked] if picked is not None else []
    selected: list[str] = []
    for binding_key, queue in bindings:
        if queue not in selected and binding_matches(exchange_type, binding_key, routing_key):
            selected.append(queue)
    return selected


# -- x-consistent-hash ------------------------------------------------------------
# As rabbitmq_consistent_hash_exchange (3.10) does it: each binding adds `int(weight)` buckets after the
# existing ones (binding order), and jump consistent hash picks a bucket for the routing key's hash. Adding a
# binding moves only the keys its new buckets take (about weight/total); removing one renumbers the buckets
# after it (RabbitMQ shifts them down), so only removing the last-bound queue moves its keys alone. The broker
# hashes with erlang:phash2, which we cannot reproduce: a key may land on another queue than in RabbitMQ, but
# always on the same one here.
_LCG_MULTIPLIER = 2862933555777941757  # Lamping & Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm"
_UINT64 = (1 << 64) - 1


def weight_of(binding_key: str) -> int:
    """A consistent-hash binding's weight; 0 for a key RabbitMQ would refuse (not an integer, or below 1)."""
    try:
        weight = int(binding_key)
    except ValueError:
        return 0
    return max(weight, 0)


def key_hash(routing_key: str) -> int:
    """A stable 64-bit hash (Python's own hash() of a str changes from one process to the next)."""
    return int.from_bytes(hashlib.blake2b(routing_key.encode(), digest_size=8).digest(), "big")


def jump_hash(key: int, buckets: int) -> int:
    """The bucket, in [0, buckets), of a 64-bit key; growing `buckets` by one moves 1/(buckets+1) of the keys."""
    if buckets < 1:
        raise ValueError("jump_hash needs at least one bucket")
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        key = (key * _LCG_MULTIPLIER + 1) & _UINT64
        jump = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def consistent_hash_pick(bindings: Iterable[tuple[str, str]], routing_key: str) -> str | None:
    """The one queue of `bindings` (weight, queue) that `routing_key` hashes to; None when no bucket exists."""
    queues: list[str] = []
    bucket_ends: list[int] = []  # cumulative bucket counts: binding i owns [bucket_ends[i-1], bucket_ends[i])
    for weight, queue in bindings:
        buckets = weight_of(weight)
        if buckets:
            queues.append(queue)
            bucket_ends.append((bucket_ends[-1] if bucket_ends else 0) + buckets)
    if not queues:
        return None
    bucket = jump_hash(key_hash(routing_key), bucket_ends[-1])
    return queues[bisect.bisect_right(bucket_ends, bucket)]
