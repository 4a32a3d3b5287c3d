"""Regexes that make a backtracking engine (Python's `re`) run for minutes on a module name,
and a guard that turns such a hang into a test failure instead of a stuck suite."""
from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

# each took from 20 s to over 120 s on one Kimi module name under `re`
CATASTROPHIC = [r"((.+))+x", r"(?:(?:.+))+x", r"(.|.)+x", r"((.+)|(.+))+x", r"model\.layers\.((.+))+x"]
# what RE2 cannot run in linear time, so refuses
UNSUPPORTED = [r"(?=.*o_proj).*", r"(?!q).*o_proj", r"(\w+)\.\1", r"(?<=self_attn\.)o_proj", r".*o_proj\Z"]
HANG_GUARD_SECONDS = 60  # a hang guard, not a timing: the work takes milliseconds


class Hung(AssertionError):
    pass


@contextlib.contextmanager
def no_hang(seconds: int = HANG_GUARD_SECONDS) -> Iterator[None]:
    """Fails the test when the block runs past `seconds` (Python's regex engine checks signals, so
    even a match stuck in backtracking is interrupted). Main thread only."""
    def expire(signum, frame):
        raise Hung(f"still running after {seconds} s: catastrophic backtracking?")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
