"""Turning generated token ids into text deltas, with stop sequences.

Text is only emitted once it can no longer change: an incomplete UTF-8 character at the end
(decoded as U+FFFD) and any tail that could still grow into a stop sequence are held back.
A stop sequence ends the output and is not part of it.
"""
from __future__ import annotations

from collections.abc import Callable

_INCOMPLETE = "\ufffd"


class TextStream:
    def __init__(self, decode: Callable[[list[int]], str], stops: list[str]):
        self._decode = decode
        self._stops = [s for s in stops if s]
        self._ids: list[int] = []
        self._emitted = 0
        self.text = ""
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Add a token; returns the text that became final."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        self.text = self._decode(self._ids)
        cut = self._first_stop()
        if cut is not None:
            self.text, self.stopped = self.text[:cut], True
            return self._emit(len(self.text))
        stable = self.text.rstrip(_INCOMPLETE)
        return self._emit(len(stable) - self._stop_prefix_len(stable))

    def finish(self) -> str:
        """Everything not yet emitted (called once the sequence ends)."""
        return self._emit(len(self.text))

    def _emit(self, end: int) -> str:
        if end <= self._emitted:
            return ""
        delta = self.text[self._emitted:end]
        self._emitted = end
        return delta

    def _first_stop(self) -> int | None:
        found = [i for i in (self.text.find(stop, max(0, self._emitted - len(stop))) for stop in self._stops) if i >= 0]
        return min(found) if found else None

    def _stop_prefix_len(self, text: str) -> int:
        """Length of the longest tail of `text` that begins some stop sequence."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest
