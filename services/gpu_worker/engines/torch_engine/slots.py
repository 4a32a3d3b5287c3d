"""Which adapter occupies which slot: least recently used first out, never one a running sequence uses."""
from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    slot: int
    evicted: str | None  # the adapter that had the slot, if any
    loaded: bool  # False when the adapter was already in the slot


class SlotTable:
    def __init__(self, num_slots: int):
        if num_slots < 1:
            raise ValueError("at least one slot is needed")
        self.num_slots = num_slots
        self._slot_of: OrderedDict[str, int] = OrderedDict()  # least recently used first
        self._pins: Counter[str] = Counter()
        self._free = list(range(num_slots - 1, -1, -1))

    @property
    def in_use(self) -> int:
        return len(self._slot_of)

    def slot_of(self, key: str) -> int | None:
        return self._slot_of.get(key)

    def place(self, key: str) -> Placement | None:
        """A slot for `key`: its own, a free one, or the least recently used unpinned one; None if all are pinned."""
        if key in self._slot_of:
            self._slot_of.move_to_end(key)
            return Placement(self._slot_of[key], None, loaded=False)
        evicted = None
        if self._free:
            slot = self._free.pop()
        else:
            evicted = next((k for k in self._slot_of if self._pins[k] == 0), None)
            if evicted is None:
                return None
            slot = self._slot_of.pop(evicted)
        self._slot_of[key] = slot
        return Placement(slot, evicted, loaded=True)

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
        """Drop an unpinned adapter from its slot (e.g. the LoRA was deleted); returns the freed slot."""
        if self._pins[key] > 0 or key not in self._slot_of:
            return None
        slot = self._slot_of.pop(key)
        self._free.append(slot)
        return slot
