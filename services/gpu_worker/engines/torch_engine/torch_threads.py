"""How many CPU threads torch should use for a model.

Tiny models are all overhead: one thread avoids OpenMP hand-offs that cost more than the
arithmetic (on a busy 2-core machine, 15-25x slower with two threads).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

SMALL_HIDDEN_SIZE = 512


def threads_for(hidden_size: int) -> int | None:
    """One thread for small models; None leaves torch's default."""
    return 1 if hidden_size < SMALL_HIDDEN_SIZE else None


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
