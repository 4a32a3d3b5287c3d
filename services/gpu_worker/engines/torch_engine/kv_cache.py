"""Per-sequence keys and values, preallocated: one row per running sequence.

Rows in use are kept packed at 0..n-1, so a decode step reads `[:n, :, :longest]` as a view;
when a sequence leaves, the last row moves into its place (`release` says which moved).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CacheShape:
    layers: int
    rows: int
    heads: int
    max_len: int
    key_dim: int
    value_dim: int


class KvCache:
    def __init__(self, shape: CacheShape, dtype: torch.dtype, device: torch.device):
        self.shape = shape
        self.keys = [torch.zeros(shape.rows, shape.heads, shape.max_len, shape.key_dim, dtype=dtype, device=device)
                     for _ in range(shape.layers)]
        self.values = [torch.zeros(shape.rows, shape.heads, shape.max_len, shape.value_dim, dtype=dtype, device=device)
                       for _ in range(shape.layers)]
        self.lengths: list[int] = []  # lengths[row] for rows 0..n-1 in use

    @property
    def rows_in_use(self) -> int:
        return len(self.lengths)

    @property
    def free_rows(self) -> int:
        return self.shape.rows - len(self.lengths)

    def claim(self, count: int) -> list[int]:
        if count > self.free_rows:
            raise RuntimeError("no free cache rows")
        first = len(self.lengths)
        self.lengths.extend([0] * count)
        return list(range(first, first + count))

    def release(self, row: int) -> int | None:
        """Free a row; returns the row that moved into it (formerly the last), if any."""
        last = len(self.lengths) - 1
        moved = None
        if row != last:
            length = self.lengths[last]
            for store in (*self.keys, *self.values):
                store[row, :, :length] = store[last, :, :length]
            self.lengths[row] = length
            moved = last
        self.lengths.pop()
        return moved

    def write_prefill(self, layer: int, rows: list[int], keys: torch.Tensor, values: torch.Tensor) -> None:
        """keys [n, H, T, dk] for rows that start empty (T includes right padding)."""
        steps = keys.shape[2]
        index = torch.tensor(rows, device=keys.device)
        self.keys[layer][index, :, :steps] = keys
        self.values[layer][index, :, :steps] = values

    def write_step(self, layer: int, rows: torch.Tensor, positions: torch.Tensor, keys: torch.Tensor,
                   values: torch.Tensor) -> None:
        """One new token for each of `rows` (every packed row 0..n-1, any order) at its own position:
        keys [n, H, 1, dk], row i's at `rows[i]`."""
        self.keys[layer][rows, :, positions] = keys[:, :, 0]
        self.values[layer][rows, :, positions] = values[:, :, 0]

    def read(self, layer: int, count: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.keys[layer][:count, :, :length], self.values[layer][:count, :, :length]

    def advance(self, rows: list[int], steps: list[int]) -> None:
        for row, step in zip(rows, steps):
            self.lengths[row] += step
