"""Which adapter occupies which slot, and which one gives up its slot to a newcomer.

Never one a running sequence uses (its count of pins), never an operator's pinned one; among the
rest the eviction policy chooses (idle before queued, frequent before one-off, LRU as the floor),
unless the engine names a victim because a request waited past its bound (`prefer`).
"""
from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass

from services.gpu_worker.adapters.eviction import WAIT_BOUND, EvictionPolicy


@dataclass(frozen=True)
class Placement:
    slot: int
    evicted: str | None  # the adapter that had the slot, if any
    loaded: bool  # False when the adapter was already in the slot
    reason: str | None = None  # why `evicted` went (adapters.eviction's reasons)


class SlotTable:
    def __init__(self, num_slots: int, policy: EvictionPolicy | None = None):
        if num_slots < 1:
            raise ValueError("at least one slot is needed")
        self.num_slots = num_slots
        self.policy = policy or EvictionPolicy()
        self._slot_of: OrderedDict[str, int] = OrderedDict()  # least recently used first
        self._pins: Counter[str] = Counter()
        self._free = list(range(num_slots - 1, -1, -1))

    @property
    def in_use(self) -> int:
        return len(self._slot_of)

    def slot_of(self, key: str) -> int | None:
        return self._slot_of.get(key)

    def touch(self, key: str) -> None:
        """A request is about to use the resident `key`."""
        self._slot_of.move_to_end(key)
        self.policy.used(key)

    def place(self, key: str, queued: frozenset[str] = frozenset(), prefer: str | None = None) -> Placement | None:
        """A slot for `key`: its own, a free one, or a victim's; None while every slot is pinned."""
        if key in self._slot_of:
            self.touch(key)
            return Placement(self._slot_of[key], None, loaded=False)
        evicted = reason = None
        if self._free:
            slot = self._free.pop()
        else:
            candidates = self.evictable()
            if not candidates:
                return None
            if prefer in candidates:
                evicted, reason = prefer, WAIT_BOUND
            else:
                evicted, reason = self.policy.victim(candidates, queued)
            slot = self._slot_of.pop(evicted)
        self._slot_of[key] = slot
        self.policy.used(key)
        return Placement(slot, evicted, loaded=True, reason=reason)

    def evictable(self) -> list[str]:
        """Resident adapters no running sequence uses and no operator pinned, least recently used first."""
        protected = self.policy.protected(self._slot_of)
        return [k for k in self._slot_of if self._pins[k] == 0 and k not in protected]

    def least_recently_used(self) -> str | None:
        """The least recently used adapter an operator did not pin, running or not (the wait bound's victim)."""
        protected = self.policy.protected(self._slot_of)
        return next((k for k in self._slot_of if k not in protected), None)

    def pin(self, key: str) -> None:
        if key not in self._slot_of:
            raise KeyError(key)
        self._pins[key] += 1

    def unpin(self, key: str) -> None:
        if self._pins[key] <= 0:
            raise ValueError(f"{key} is not pinned")
        self._pins[key] -= 1

    def unpin_all(self) -> None:
        self._pins.clear()

    def forget(self, key: str) -> int | None:
        """Drop an unpinned adapter from its slot (e.g. its load failed); returns the freed slot."""
        if self._pins[key] > 0 or key not in self._slot_of:
            return None
        slot = self._slot_of.pop(key)
        self._free.append(slot)
        return slot
