"""The consistent-hash exchange as rabbitmq_consistent_hash_exchange routes: one queue per routing key, spread by
weight, and few keys moving when the bound queues change."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from shared.bus.routing import consistent_hash_pick, jump_hash, key_hash, route, weight_of
from shared.contracts.topology import ExchangeType

ROOT = Path(__file__).resolve().parents[3]  # the repository, where `shared` imports from
KEYS = [f"lora-{n}" for n in range(3000)]
THREE = [("1", "q0"), ("1", "q1"), ("1", "q2")]


def placement(bindings: list[tuple[str, str]]) -> dict[str, str | None]:
    return {key: consistent_hash_pick(bindings, key) for key in KEYS}


def test_equal_weights_spread_keys_about_evenly():
    counts = Counter(placement(THREE).values())
    assert set(counts) == {"q0", "q1", "q2"}
    assert all(800 <= count <= 1200 for count in counts.values()), counts  # 1,000 each, give or take


def test_a_key_always_goes_to_the_same_queue():
    first = placement(THREE)
    assert placement(THREE) == first
    assert route(ExchangeType.CONSISTENT_HASH, THREE, "lora-7") == [first["lora-7"]]


def test_processes_with_different_hash_seeds_route_a_key_alike():
    # Python's hash() of a str is salted per process; the publishers of every service must agree
    script = "from shared.bus.routing import consistent_hash_pick as p; print([p(%r, f'lora-{n}') for n in range(50)])"
    picks = {
        subprocess.run([sys.executable, "-c", script % (THREE,)], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}, cwd=ROOT).stdout
        for seed in ("1", "2")
    }
    assert picks == {f"{[placement(THREE)[f'lora-{n}'] for n in range(50)]}\n"}


def test_a_weight_two_queue_gets_about_twice_the_keys():
    counts = Counter(placement([("1", "light"), ("2", "heavy")]).values())
    assert 1.6 <= counts["heavy"] / counts["light"] <= 2.4, counts


def test_adding_a_queue_moves_only_about_its_share_and_only_to_it():
    before = placement(THREE)
    after = placement([*THREE, ("1", "q3")])
    moved = [key for key in KEYS if before[key] != after[key]]
    assert all(after[key] == "q3" for key in moved)
    assert 600 <= len(moved) <= 900  # about a quarter of 3,000


def test_removing_the_last_bound_queue_moves_only_its_keys():
    before = placement(THREE)
    after = placement(THREE[:2])
    moved = {key for key in KEYS if before[key] != after[key]}
    assert moved == {key for key in KEYS if before[key] == "q2"}
    assert set(after.values()) == {"q0", "q1"}


def test_removing_a_queue_sends_its_keys_to_the_others_and_drops_it_from_the_ring():
    # RabbitMQ renumbers the buckets after a removed binding, so an earlier queue's removal also moves some keys
    # between the queues that stay; every key still lands on exactly one live queue
    after = placement([THREE[0], THREE[2]])
    assert set(after.values()) == {"q0", "q2"}


@pytest.mark.parametrize("weight", ["0", "-1", "one", "", "1.5"])
def test_a_binding_with_no_valid_weight_gets_no_keys(weight):
    assert weight_of(weight) == 0
    assert set(placement([(weight, "broken"), ("1", "ok")]).values()) == {"ok"}


def test_no_bucket_no_queue():
    assert consistent_hash_pick([], "lora-1") is None
    assert consistent_hash_pick([("0", "q")], "lora-1") is None
    assert route(ExchangeType.CONSISTENT_HASH, [], "lora-1") == []


def test_jump_hash_grows_by_moving_keys_to_the_new_bucket_only():
    keys = [key_hash(key) for key in KEYS]
    for buckets in range(1, 8):
        for key in keys[:300]:
            old, new = jump_hash(key, buckets), jump_hash(key, buckets + 1)
            assert new in (old, buckets)
    with pytest.raises(ValueError):
        jump_hash(1, 0)
