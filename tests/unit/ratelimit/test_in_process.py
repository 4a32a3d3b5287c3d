"""The in-process limiter: all of a request's limits or none, windows that reopen, settling."""
from __future__ import annotations

from shared.ratelimit import Limit
from shared.ratelimit.memory import InProcessLimiter


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def request(tokens: int, rpm: int = 3, tpm: int = 100) -> list[Limit]:
    return [Limit("requests", "org:a:requests", rpm, 1), Limit("tokens", "org:a:tokens", tpm, tokens)]


async def test_a_request_refused_for_tokens_uses_none_of_its_requests():
    limiter = InProcessLimiter(Clock())
    assert (await limiter.acquire(request(60), 60)).allowed
    refused = await limiter.acquire(request(60), 60)
    assert not refused.allowed and [s.limit.name for s in refused.refused_by()] == ["tokens"]
    assert (await limiter.acquire(request(40), 60)).allowed
    counted = {s.limit.name: s.used for s in (await limiter.acquire(request(0), 60)).states}
    assert counted == {"requests": 3, "tokens": 100}


async def test_the_window_reopens_after_its_length():
    clock = Clock()
    limiter = InProcessLimiter(clock)
    for _ in range(3):
        assert (await limiter.acquire(request(1), 1.0)).allowed
    refused = await limiter.acquire(request(1), 1.0)
    assert not refused.allowed and 0 < refused.retry_after() <= 1.0
    clock.now += 1.0
    again = await limiter.acquire(request(1), 1.0)
    assert again.allowed and again.states[0].remaining == 2


async def test_settling_corrects_the_open_window_only():
    clock = Clock()
    limiter = InProcessLimiter(clock)
    await limiter.acquire(request(10), 60)
    await limiter.settle("org:a:tokens", 50)
    state = (await limiter.acquire(request(0), 60)).states[1]
    assert state.used == 60 and state.remaining == 40
    clock.now += 61
    await limiter.settle("org:a:tokens", 50)
    assert (await limiter.acquire(request(0), 60)).states[1].used == 0
