"""Which adapter a full tier gives up: the same policy for the engine's slots and the worker's CPU tier.

Each tier keeps its own use scores: every use adds 1 to an adapter's score and scores halve every
`half_life` seconds (LRFU, Lee et al. 2001), so an adapter used every second outranks one used once,
and one used often an hour ago fades like a one-off. LRU is the floor: equal scores fall back to the
least recently used. Ahead of scores comes what the worker knows (`Residency`): an adapter with
queued or running jobs is given up only when every other candidate has some too, and an operator's
pin keeps an adapter out of the candidates altogether (the tier enforces pins < capacity).
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable

from services.gpu_worker.adapters.residency import Residency

DEFAULT_HALF_LIFE_SECONDS = 60.0
# reasons an adapter left a tier (the evictions metric's bounded label)
IDLE = "idle"  # it had no queued or running job
QUEUED = "queued"  # every candidate had jobs waiting: the least valuable of them went
WAIT_BOUND = "wait_bound"  # a request waited past the bound: the least recently used went, whatever its score
NOT_ADMITTED = "not_admitted"  # CPU tier: the newcomer was worth less than what it would have pushed out


class UsageScores:
    """Per key, a score that grows by 1 per use and halves every `half_life` seconds, and the last use."""

    def __init__(self, half_life: float = DEFAULT_HALF_LIFE_SECONDS, max_keys: int = 20_000,
                 clock: Callable[[], float] = time.monotonic):
        if half_life <= 0:
            raise ValueError("half_life must be positive")
        self.half_life, self.max_keys, self.clock = half_life, max_keys, clock
        self._lock = threading.Lock()
        self._scores: dict[str, tuple[float, float]] = {}  # key -> (score at last use, time of last use)

    def used(self, key: str) -> None:
        now = self.clock()
        with self._lock:
            self._scores[key] = (self._decayed(key, now) + 1.0, now)
            if len(self._scores) > self.max_keys:
                self._prune(now)

    def score(self, key: str, now: float | None = None) -> float:
        with self._lock:
            return self._decayed(key, self.clock() if now is None else now)

    def last_used(self, key: str) -> float:
        entry = self._scores.get(key)
        return entry[1] if entry else -math.inf

    def _decayed(self, key: str, now: float) -> float:
        entry = self._scores.get(key)
        if entry is None:
            return 0.0
        score, at = entry
        return score * 0.5 ** ((now - at) / self.half_life)

    def _prune(self, now: float) -> None:
        """Forget the faintest half: what remains still ranks every adapter seen lately (ghost entries)."""
        ranked = sorted(self._scores, key=lambda k: self._decayed(k, now))
        for key in ranked[: len(ranked) // 2]:
            del self._scores[key]


class EvictionPolicy:
    """Chooses victims for one tier from its candidates (keys it may give up, least recently used first)."""

    def __init__(self, residency: Residency | None = None, half_life: float = DEFAULT_HALF_LIFE_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.residency = residency or Residency()
        self.usage = UsageScores(half_life, clock=clock)

    def used(self, key: str) -> None:
        self.usage.used(key)

    def protected(self, resident_lru_first: Iterable[str]) -> set[str]:
        """Keys an operator's pin keeps: per pinned LoRA, its most recently used resident version only (so a
        LoRA whose files changed holds one place, and pinned places never outnumber pins)."""
        newest: dict[str, str] = {}
        for key in resident_lru_first:
            lora_id = self.residency.lora_id_of(key)
            if self.residency.is_pinned(lora_id):
                newest[lora_id] = key
        return set(newest.values())

    def rank(self, key: str, now: float, also_queued: frozenset[str] = frozenset()) -> tuple:
        """Lower goes first: idle before queued, then the lowest score, then the least recently used."""
        queued = key in also_queued or self.residency.queued(key) > 0
        return queued, self.usage.score(key, now), self.usage.last_used(key)

    def victim(self, candidates: Iterable[str], also_queued: frozenset[str] = frozenset()) -> tuple[str, str] | None:
        """(key, reason) of the candidate to give up, or None when there is none."""
        now = self.usage.clock()
        best, best_rank = None, None
        for key in candidates:
            rank = self.rank(key, now, also_queued)
            if best_rank is None or rank < best_rank:
                best, best_rank = key, rank
        if best is None:
            return None
        return best, QUEUED if best_rank[0] else IDLE

    def admits(self, newcomer: str, victim: str) -> bool:
        """Whether `newcomer` is worth keeping at `victim`'s expense (a cache may instead let it pass through)."""
        if self.residency.is_pinned(self.residency.lora_id_of(newcomer)):
            return True
        now = self.usage.clock()
        return self.usage.score(newcomer, now) >= self.usage.score(victim, now)
