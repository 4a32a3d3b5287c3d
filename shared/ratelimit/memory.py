"""Fixed windows in this process's memory: the embedded default and tests. One event loop, no awaits
between reading and writing a counter, so no lock is needed."""
from __future__ import annotations

import time
from collections.abc import Sequence

from shared.ratelimit.limits import Decision, Limit, LimitState

# past this many counters, windows that closed are swept (one entry per org or key and limit)
SWEEP_AT = 10_000


class InProcessLimiter:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._windows: dict[str, tuple[int, float]] = {}  # key -> (used, closes_at)

    def _open(self, key: str, now: float) -> tuple[int, float] | None:
        window = self._windows.get(key)
        return window if window is not None and window[1] > now else None

    async def acquire(self, limits: Sequence[Limit], window_seconds: float) -> Decision:
        now = self._clock()
        if len(self._windows) > SWEEP_AT:
            self._windows = {k: w for k, w in self._windows.items() if w[1] > now}
        current = [self._open(limit.key, now) or (0, now + window_seconds) for limit in limits]
        allowed = all(used + limit.cost <= limit.limit or not limit.cost
                      for limit, (used, _) in zip(limits, current, strict=True))
        states = []
        for limit, (used, closes_at) in zip(limits, current, strict=True):
            if allowed and limit.cost:
                used += limit.cost
                self._windows[limit.key] = (used, closes_at)
            states.append(LimitState(limit=limit, used=used, reset_seconds=max(0.0, closes_at - now),
                                     counted=allowed))
        return Decision(allowed=allowed, states=tuple(states))

    async def settle(self, key: str, delta: int) -> None:
        window = self._open(key, self._clock())
        if window is not None:
            self._windows[key] = (max(0, window[0] + delta), window[1])

    async def close(self) -> None:
        self._windows.clear()
