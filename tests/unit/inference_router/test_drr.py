"""Deficit round-robin: a flood waits behind its own requests, costs are shared fairly, callers can leave."""
from __future__ import annotations

from services.inference_router.fairness.drr import DeficitRoundRobin


def drain(queue: DeficitRoundRobin, count: int) -> list[str]:
    sent = []
    while len(sent) < count and queue.front() is not None:
        if queue.affordable():
            sent.append(queue.take())
        else:
            queue.skip()
    return sent


def test_a_flood_alternates_with_a_single_request():
    queue = DeficitRoundRobin(quantum=1, cost=lambda item: 1)
    for i in range(100):
        queue.push("flood", f"a{i}")
    queue.push("victim", "b0")
    assert drain(queue, 3) == ["a0", "b0", "a1"]


def test_orgs_send_equal_tokens_whatever_their_request_sizes():
    queue = DeficitRoundRobin(quantum=400, cost=lambda item: item[1])
    for i in range(20):
        queue.push("big", ("big", 400))
        queue.push("small", ("small", 100))
    sent = drain(queue, 25)
    big = sum(cost for org, cost in sent if org == "big")
    small = sum(cost for org, cost in sent if org == "small")
    assert big == 2000 and small == 2000  # five rounds of 400 tokens each


def test_a_request_larger_than_the_quantum_goes_after_enough_rounds():
    queue = DeficitRoundRobin(quantum=100, cost=lambda item: item[1])
    queue.push("huge", ("huge", 350))
    for i in range(10):
        queue.push("small", ("small", 100))
    sent = [org for org, _ in drain(queue, 11)]
    assert sent.index("huge") == 3  # it waited three rounds of credit while the small org sent one per round


def test_an_org_that_could_not_send_for_long_returns_with_one_quantum_of_extra_credit_not_a_burst():
    queue = DeficitRoundRobin(quantum=1, cost=lambda item: 1)
    for i in range(10):
        queue.push("capped", f"c{i}")
    queue.push("other", "o0")
    for _ in range(50):  # "capped" is at its in-flight cap: its turn is passed again and again
        queue.skip()
    queue.push("other", "o1")
    sent = drain(queue, 4)
    assert sent == ["c0", "c1", "o0", "o1"]  # 25 passed turns bought two requests, not 25


def test_a_caller_that_left_is_taken_out_and_its_org_leaves_the_ring():
    queue = DeficitRoundRobin(quantum=1, cost=lambda item: 1)
    queue.push("a", "a0")
    queue.push("b", "b0")
    assert queue.discard("a", "a0") and not queue.discard("a", "a0")
    assert queue.front() == ("b", "b0") and queue.orgs == 1 and len(queue) == 1
    assert queue.affordable() and queue.take() == "b0" and queue.front() is None


def test_fast_forward_gives_the_rounds_of_credit_at_once_and_keeps_the_order():
    queue = DeficitRoundRobin(quantum=1, cost=lambda item: item[1])
    queue.push("a", ("a", 2**20))
    queue.push("b", ("b", 2**20))
    skips = 0
    while not queue.affordable():
        skips += 1
        if skips % 2 == 0:
            queue.fast_forward()
        queue.skip()
    assert skips < 10 and queue.take() == ("a", 2**20)
