"""Pausing Python's cyclic garbage collector while a large header is parsed and checked.

A full-size Kimi adapter's header becomes ~1 million containers (the parsed JSON, then a
tuple per tensor and per module). None of them is in a reference cycle: reference counting
frees them all. But each allocation counts towards the collector's thresholds, so it runs
hundreds of times and re-traverses everything alive several times over, which took about
as long as the parsing and checking themselves. Pausing it changes no result; cycles made
meanwhile elsewhere in the process are collected once it resumes.

The collector is process-wide and validations may overlap in threads, so pauses are
counted: it resumes when the last one ends, and only if it was running before the first.
"""
from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_active = 0
_resume = False  # whether the collector was enabled when the first active pause began


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    global _active, _resume
    with _lock:
        if _active == 0:
            _resume = gc.isenabled()
            gc.disable()
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _resume:
                gc.enable()
