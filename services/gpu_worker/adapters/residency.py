"""What the worker knows about its adapters beyond any one tier: operators' pins and the jobs it holds.

Pins name LoRA ids (names are per org; ids are global). They are always fewer than the engine's
slots, so a request for an unpinned adapter can always get a slot eventually. The queued counts
cover every job the worker holds (prefetched, waiting for its place in the batch, or running), by
adapter key. The jobs' event loop writes; the engine's thread reads: a lock guards both.
"""
from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterable, Iterator

MAX_LORA_ID_CHARS = 128


class PinLimit(ValueError):
    """Pinning these LoRAs would leave no slot for any other adapter."""


def parse_pins(text: str) -> list[str]:
    """The setting's comma-separated LoRA ids, in order, without blanks or repeats."""
    return list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


class Residency:
    def __init__(self, max_pins: int | None = None, pins: Iterable[str] = ()):
        self.max_pins = max_pins
        self._lock = threading.Lock()
        self._pins: frozenset[str] = frozenset()
        self._queued: Counter[str] = Counter()
        self.set_pins(pins)

    # -- operator pins ---------------------------------------------------------------
    @property
    def pins(self) -> list[str]:
        return sorted(self._pins)

    def set_pins(self, lora_ids: Iterable[str]) -> None:
        pins = frozenset(lora_ids)
        with self._lock:
            self._check(pins)
            self._pins = pins

    def pin(self, lora_id: str) -> bool:
        """Pin one more LoRA; False if it already was."""
        with self._lock:
            if lora_id in self._pins:
                return False
            pins = self._pins | {lora_id}
            self._check(pins)
            self._pins = pins
            return True

    def unpin(self, lora_id: str) -> bool:
        with self._lock:
            if lora_id not in self._pins:
                return False
            self._pins = self._pins - {lora_id}
            return True

    def _check(self, pins: frozenset[str]) -> None:
        for lora_id in pins:
            if not lora_id or len(lora_id) > MAX_LORA_ID_CHARS or ":" in lora_id:
                raise ValueError(f"{lora_id!r} is not a LoRA id")
        if self.max_pins is not None and len(pins) > self.max_pins:
            raise PinLimit(f"{len(pins)} pinned LoRAs would leave no slot for the others: at most {self.max_pins} "
                           f"(one fewer than the worker's {self.max_pins + 1} slots)")

    def is_pinned(self, lora_id: str) -> bool:
        return lora_id in self._pins

    def is_pinned_key(self, key: str) -> bool:
        """Whether the adapter with this cache key belongs to a pinned LoRA."""
        return self.lora_id_of(key) in self._pins

    @staticmethod
    def lora_id_of(key: str) -> str:
        return key.split(":", 1)[0]  # adapter keys are "<lora id>:<config file id>:<weights file id>"

    # -- jobs the worker holds ---------------------------------------------------------
    @contextlib.contextmanager
    def holding(self, key: str | None) -> Iterator[None]:
        """Count a job for `key` while the block runs (from its arrival until it is done)."""
        if key is None:
            yield
            return
        with self._lock:
            self._queued[key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._queued[key] -= 1
                if self._queued[key] <= 0:
                    del self._queued[key]

    def queued(self, key: str) -> int:
        with self._lock:
            return self._queued.get(key, 0)
